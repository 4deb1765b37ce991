"""experiments/export.py: a real sweep into a real MLflow server (read back through its REST API)
and into TensorBoard event files (read back with TensorBoard's own reader); exports are idempotent."""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests

from experiments import export
from experiments.paths import RUN_PY

pytestmark = pytest.mark.slow

SWEEP = ["-m", "activation=relu,tanh", "epochs=3", "width=8", "data.n_samples=200", "threads=1"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-run sweep (relu, tanh) made by run.py."""
    cwd = tmp_path_factory.mktemp("sweep")
    out = cwd / "sweeps" / "s1"
    r = subprocess.run([sys.executable, str(RUN_PY), *SWEEP, f"hydra.sweep.dir={out}"], cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*/metrics.csv"))) == 2
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 and a free port, SQLite backend; its URL."""
    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
           f"sqlite:///{d / 'mlflow.db'}", "--artifacts-destination", str(d / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (d / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=d, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or still starting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start: " + (d / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _api(url: str, path: str, **params: object) -> dict:
    if "search" in path:
        r = requests.post(f"{url}/api/2.0/mlflow/{path}", json=params, timeout=30)
    else:
        r = requests.get(f"{url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    assert r.ok, r.text
    return r.json()


def _search(url: str, exp_id: str) -> list[dict]:
    return _api(url, "runs/search", experiment_ids=[exp_id], max_results=100).get("runs", [])


def test_export_to_mlflow_server_logs_runs_params_metrics_and_artifacts(
        sweep: Path, mlflow_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = mlflow_server
    assert export.main(["--to", "mlflow", "--uri", url, str(sweep)]) == 0
    assert "2 added, 0 updated, 0 unchanged" in capsys.readouterr().out
    exp_id = _api(url, "experiments/get-by-name", experiment_name=sweep.name)["experiment"][
        "experiment_id"]
    runs = _search(url, exp_id)
    assert len(runs) == 2
    by_dir = {}
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        by_dir[tags["mlp.run_dir"]] = (run, tags)
    assert set(by_dir) == {str(p.parent) for p in sweep.glob("*/metrics.csv")}
    for run_dir, (run, tags) in by_dir.items():
        d = Path(run_dir)
        summary = json.loads((d / "summary.json").read_text())
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["activation"] in d.name and params["width"] == "8"
        assert params["optim.lr"] == "0.01" and params["data.name"] == "spirals"
        assert tags["status"] == "completed" and run["info"]["status"] == "FINISHED"
        assert tags["sweep"] == sweep.name and tags["git"] == summary["versions"]["git"]
        run_id = run["info"]["run_id"]
        rows = _rows(d / "metrics.csv")
        hist = _api(url, "metrics/get-history", run_id=run_id, metric_key="val_acc")["metrics"]
        assert [(m["step"], m["value"]) for m in sorted(hist, key=lambda m: m["step"])] == \
            [(int(r["epoch"]), float(r["val_acc"])) for r in rows]
        layer = _rows(d / "layers.csv")
        fc1 = [r for r in layer if r["layer"] == "1"]
        key = f"layers/1_{fc1[0]['name']}/act_std"
        hist = _api(url, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
        assert sorted((m["step"], m["value"]) for m in hist) == \
            [(int(r["epoch"]), float(r["act_std"])) for r in fc1]
        files = {f["path"] for f in _api(url, "artifacts/list", run_id=run_id).get("files", [])}
        assert {"summary.json", "run.log"} <= files

    # a second export adds nothing
    assert export.main(["--to", "mlflow", "--uri", url, str(sweep)]) == 0
    assert "0 added, 0 updated, 2 unchanged" in capsys.readouterr().out
    assert len(_search(url, exp_id)) == 2

    # a run whose record changed (a note added) is rewritten in place, not duplicated
    d = sorted(sweep.glob("0_*"))[0]
    s = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({**s, "notes": "lr too high?"}))
    try:
        assert export.main(["--to", "mlflow", "--uri", url, str(sweep)]) == 0
        assert "0 added, 1 updated, 1 unchanged" in capsys.readouterr().out
        runs = _search(url, exp_id)
        assert len(runs) == 2
        notes = [t["value"] for r in runs for t in r["data"]["tags"] if t["key"] == "notes"]
        assert notes == ["lr too high?"]
    finally:
        (d / "summary.json").write_text(json.dumps(s))


def test_export_to_default_sqlite_store_needs_no_server(sweep: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert export.main(["--to", "mlflow", str(sweep)]) == 0
    client = mlflow.tracking.MlflowClient(tracking_uri="sqlite:///outputs/mlflow.db")
    exp = client.get_experiment_by_name(sweep.name)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert (tmp_path / "outputs" / "mlflow.db").is_file()


def test_export_to_tensorboard_reads_back_with_tensorboard(sweep: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    logdir = tmp_path / "tb"
    assert export.main(["--to", "tensorboard", "--logdir", str(logdir), str(sweep)]) == 0
    assert "2 added" in capsys.readouterr().out
    for d in sorted(p.parent for p in sweep.glob("*/metrics.csv")):
        acc = EventAccumulator(str(logdir / sweep.name / d.name))
        acc.Reload()
        rows = _rows(d / "metrics.csv")
        got = [(e.step, e.value) for e in acc.Scalars("metrics/val_loss")]
        assert [s for s, _ in got] == [int(r["epoch"]) for r in rows]
        for (_, v), r in zip(got, rows, strict=True):
            assert math.isclose(v, float(r["val_loss"]), rel_tol=1e-6)  # stored as float32
        assert "layers/0_fc0/grad_norm" in acc.Tags()["scalars"]
        assert "hparam/best_val_acc" in acc.Tags()["scalars"]
        meta = acc.PluginTagToContent("hparams")
        info = plugin_data_pb2.HParamsPluginData.FromString(meta["_hparams_/session_start_info"])
        hp = {k: v.string_value or v.number_value for k, v in info.session_start_info.hparams.items()}
        assert hp["activation"] in d.name and hp["width"] == 8 and hp["status"] == "completed"
    before = sorted((p, p.stat().st_mtime_ns) for p in logdir.rglob("*"))
    assert export.main(["--to", "tensorboard", "--logdir", str(logdir), str(sweep)]) == 0
    assert "0 added, 0 updated, 2 unchanged" in capsys.readouterr().out
    assert sorted((p, p.stat().st_mtime_ns) for p in logdir.rglob("*")) == before


def test_export_without_runs_is_one_line_and_status_2(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert export.main(["--to", "tensorboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("export.py: no runs under") and "\n" not in err


def test_core_and_harness_do_not_import_the_trackers() -> None:
    code = ("import sys, experiments.run, experiments.compare, mlp_core.train; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mlflow', 'tensorboard', 'experiments') and 'tracker' in m or "
            "m.split('.')[0] in ('mlflow', 'tensorboard')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_live_logger_sends_each_epoch_as_it_is_written(sweep: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from experiments.harness import hooks
    from experiments.trackers.live import LiveLogger

    d = sorted(p.parent for p in sweep.glob("*/metrics.csv"))[0]
    rows = [{k: float(v) if k != "epoch" else int(v) for k, v in r.items()}
            for r in _rows(d / "metrics.csv")]
    logger = LiveLogger("tensorboard", logdir=str(tmp_path / "tb"))
    logger.on_job_start(config=None)
    try:
        for n, row in enumerate(rows[:2], 1):
            hooks.call_epoch_hooks(d, row)
            acc = EventAccumulator(str(tmp_path / "tb" / sweep.name / d.name))
            acc.Reload()
            assert [e.step for e in acc.Scalars("metrics/val_loss")] == list(range(n))
    finally:
        hooks.EPOCH_HOOKS.remove(logger._hook)


def test_plus_logger_mlflow_logs_a_run_while_it_trains(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(RUN_PY), "epochs=2", "width=8", "data.n_samples=200",
                        "threads=1", "+logger=mlflow"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    client = mlflow.tracking.MlflowClient(
        tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("runs")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the live run was replaced
    hist = client.get_metric_history(runs[0].info.run_id, "val_acc")
    assert sorted(m.step for m in hist) == [0, 1, 2]
    assert runs[0].data.params["width"] == "8"
