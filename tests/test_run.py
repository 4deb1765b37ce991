"""experiments/run.py: configs, validation, run directories, sweeps, failures, resume, launchers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from experiments import record
from experiments.harness.preflight import PreflightError, plan
from experiments.harness.schema import Activation, Init
from experiments.harness.validate import group_options
from experiments.paths import CONF_DIR as CONF
from experiments.paths import RUN_PY
from experiments.record import LAYER_COLUMNS, metric_columns
from experiments.run import train
from mlp_core.data import DATASETS
from mlp_core.init import INITS
from mlp_core.layers import ACTIVATIONS
from tests.helpers import cli as run_py

TINY = ["epochs=2", "width=8", "data.n_samples=200"]  # a run of a fraction of a second
TIMING = ("epoch_time_s", "samples_per_s")
BAD_VALUES = [  # (override, key the message must name)
    ("activation=foo", "activation"),
    ("depth=-1", "depth"),
    ("width=abc", "width"),
    ("data=nope", "data"),
    ("optim.lr=-1", "optim.lr"),
]


def cli(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run experiments/run.py in a subprocess (this file's runs are small: 180 s at most)."""
    return run_py(*args, cwd=cwd, timeout=timeout)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / record.SUMMARY).read_text())


def mtimes(run_dir: Path) -> dict[str, int]:
    names = (record.METRICS, record.LAYERS, record.SUMMARY, record.CHECKPOINT, record.CONFIG,
             record.OVERRIDES, record.LOG)
    return {n: (run_dir / n).stat().st_mtime_ns for n in names}


def without_timing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


# ---------------------------------------------------------------- config layer (fast)
def test_enum_members_are_exactly_the_names_mlp_core_accepts() -> None:
    assert [m.name for m in Activation] == list(ACTIVATIONS)
    assert [m.name for m in Init] == list(INITS)
    assert all(m.name == m.value for m in (*Activation, *Init))
    assert group_options("data") == sorted(DATASETS)
    assert group_options("optim") == ["adam", "sgd"]


@pytest.mark.parametrize("data", sorted(DATASETS))
def test_every_dataset_config_composes_and_validates(data: str, tmp_path: Path) -> None:
    extra = [f"data.path={tmp_path / 'x.csv'}", "data.target=y"] if data == "csv" else []
    p = plan([f"data={data}", *extra], CONF)
    assert p is not None and p.configs[0].data.name == data


@pytest.mark.parametrize("preset", group_options("experiment"))
def test_every_preset_composes_and_counts_its_jobs(preset: str) -> None:
    p = plan(["-m", f"+experiment={preset}"], CONF)
    assert p is not None and p.multirun and p.n_jobs >= 3


@pytest.mark.parametrize("override,key", BAD_VALUES + [
    ("optim.momentum=0.5", "optim.momentum"),  # adam has no momentum
    ("data=csv", "data.path"),
    ("dropout=1.5", "dropout"),
    ("optim.schedule=linear", "optim.schedule"),
    ("data=mnist1d data.n_samples=500", "data.n_samples"),  # canonical: the published 5000
])
def test_a_bad_value_is_one_line_naming_the_key_and_what_is_allowed(override: str,
                                                                    key: str) -> None:
    with pytest.raises(PreflightError) as err:
        plan(override.split(), CONF)
    msg = str(err.value)
    assert "\n" not in msg and key in msg and "allowed" in msg


def test_a_sweep_is_checked_value_by_value() -> None:
    with pytest.raises(PreflightError, match="activation=foo"):
        plan(["-m", "activation=relu,foo"], CONF)
    p = plan(["-m", "activation=relu,tanh", "seed=0,1,2"], CONF)
    assert p is not None and p.n_jobs == 6


# ---------------------------------------------------------------- one run, in process
def test_a_run_writes_metrics_layers_summary_log_and_checkpoint(make_cfg, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = train(make_cfg(*TINY), run_dir)
    assert result["status"] == "completed"
    rows = read_rows(run_dir / record.METRICS)
    assert list(rows[0]) == metric_columns("classification")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    layers = read_rows(run_dir / record.LAYERS)
    assert list(layers[0]) == LAYER_COLUMNS and {int(r["epoch"]) for r in layers} == {0, 1, 2}
    s = summary(run_dir)
    for key in ("status", "task", "dataset", "final", "best", "test", "epochs_completed",
                "wall_time_s", "n_params", "gradcheck_max_rel_err", "error", "versions"):
        assert key in s
    assert "config" not in s  # the config has one home: config.yaml
    config = yaml.safe_load((run_dir / record.CONFIG).read_text())
    assert config["epochs"] == 2 and config["width"] == 8 and config["data"]["n_samples"] == 200
    assert yaml.safe_load((run_dir / record.OVERRIDES).read_text()) == []  # not run by Hydra
    assert s["epochs_completed"] == 2 and s["final"]["epoch"] == 2
    assert 0 <= s["best"]["best_val_acc"] <= 1 and "test_acc" in s["test"]
    assert s["gradcheck_max_rel_err"] < 1e-5
    assert "epoch 2/2" in (run_dir / record.LOG).read_text()
    state = torch.load(run_dir / record.CHECKPOINT, weights_only=True)
    assert state["epoch"] == 2


def test_canonical_mnist1d_without_val_trains_on_all_4000_and_writes_no_val_columns(
        make_cfg, tmp_path) -> None:
    run_dir = tmp_path / "run"
    result = train(make_cfg("data=mnist1d", "data.val_frac=0", "epochs=1", "width=8",
                            "batch_size=1000"), run_dir)
    assert result["status"] == "completed"
    rows = read_rows(run_dir / record.METRICS)
    assert list(rows[0]) == metric_columns("classification", val=False)
    assert int(rows[1]["step"]) == 4  # 4000 training samples, batches of 1000
    s = summary(run_dir)
    assert s["best"]["best_val_acc"] is None and 0 <= s["test"]["test_acc"] <= 1
    assert "val_" not in (run_dir / record.LOG).read_text()


def test_a_relaunch_of_a_finished_run_trains_nothing_and_touches_nothing(make_cfg,
                                                                        tmp_path) -> None:
    run_dir = tmp_path / "run"
    train(make_cfg(*TINY), run_dir)
    before = mtimes(run_dir)
    again = train(make_cfg(*TINY, "threads=1"), run_dir)  # threads do not change results
    assert again["status"] == "completed"
    assert mtimes(run_dir) == before


def test_a_run_dir_holding_another_config_is_refused_and_left_alone(make_cfg, tmp_path) -> None:
    run_dir = tmp_path / "run"
    train(make_cfg(*TINY), run_dir)
    before = {n: (run_dir / n).read_bytes() for n in (record.METRICS, record.SUMMARY)}
    result = train(make_cfg(*TINY, "optim.lr=0.5"), run_dir)
    assert result["status"] == "refused" and "optim.lr: 0.01 -> 0.5" in result["error"]
    assert {n: (run_dir / n).read_bytes() for n in before} == before
    assert "refused" in (run_dir / record.LOG).read_text()


def test_a_run_dir_with_results_but_no_config_record_is_refused(make_cfg, tmp_path) -> None:
    run_dir = tmp_path / "run"
    train(make_cfg(*TINY), run_dir)
    (run_dir / record.CONFIG).unlink()
    before = (run_dir / record.METRICS).read_bytes()
    result = train(make_cfg(*TINY), run_dir)
    assert result["status"] == "refused" and record.CONFIG in result["error"]
    assert (run_dir / record.METRICS).read_bytes() == before


def test_a_failed_gradient_check_marks_the_run_failed(make_cfg, tmp_path, monkeypatch) -> None:
    import mlp_core.model as model_mod

    real = model_mod.act_backward  # a backward wrong by 1%: the check must catch it
    monkeypatch.setattr(model_mod, "act_backward", lambda *a: real(*a) * 1.01)
    result = train(make_cfg(*TINY), tmp_path / "run")
    assert result["status"] == "failed" and "gradient check failed" in result["error"]
    assert summary(tmp_path / "run")["gradcheck_max_rel_err"] > 1e-4


def test_gradcheck_false_skips_the_check(make_cfg, tmp_path) -> None:
    result = train(make_cfg(*TINY, "gradcheck=false"), tmp_path / "run")
    assert result["status"] == "completed" and result["gradcheck_max_rel_err"] is None


# ---------------------------------------------------------------- the command line (slow)
@pytest.mark.slow
@pytest.mark.parametrize("override,key", BAD_VALUES + [("-m activation=relu,foo", "activation")])
def test_a_bad_value_exits_nonzero_without_traceback_or_run_dir(override: str, key: str,
                                                                tmp_path: Path) -> None:
    res = cli(*override.split(), cwd=tmp_path)
    assert res.returncode != 0
    assert key in res.stderr and "Traceback" not in res.stderr + res.stdout
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_a_four_run_sweep_writes_four_runs_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    args = ["-m", "activation=relu,tanh", "seed=0,1", *TINY, "hydra.sweep.dir=sweep"]
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[run 4 of 4]" in res.stdout and "sweep finished: 4 runs: 4 completed" in res.stdout
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob(f"*/{record.METRICS}"))
    assert len(runs) == 4 and runs[0].name.startswith("0_activation=relu")
    for run in runs:
        assert [int(r["epoch"]) for r in read_rows(run / record.METRICS)] == [0, 1, 2]
        assert read_rows(run / record.LAYERS) and summary(run)["status"] == "completed"
        overrides = yaml.safe_load((run / record.OVERRIDES).read_text())
        assert "activation=relu" in overrides or "activation=tanh" in overrides
        assert sorted(p.name for p in (run / ".hydra").iterdir()) == [
            "config.yaml", "hydra.yaml", "overrides.yaml"]  # Hydra's own, nothing added
    before = {r: mtimes(r) for r in runs}
    res = cli(*args, cwd=tmp_path)
    assert res.returncode == 0 and "4 skipped" in res.stdout
    assert "gradient check" not in res.stdout  # nothing trained
    assert {r: mtimes(r) for r in runs} == before


@pytest.mark.slow
def test_divergence_and_a_raising_run_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    good = tmp_path / "xor.csv"
    g = torch.Generator().manual_seed(0)
    X = torch.rand(200, 2, generator=g) * 2 - 1
    lines = ["x0,x1,label"] + [f"{a},{b},{int(a * b > 0)}" for a, b in X.tolist()]
    good.write_text("\n".join(lines) + "\n")
    res = cli("-m", "data=csv", "data.target=label", f"data.path={good},{tmp_path / 'no.csv'}",
              "optim.lr=0.01,1e4", "epochs=4", "width=8", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "4 runs: 1 completed, 1 diverged, 2 failed" in res.stdout
    statuses = {}
    for run in (tmp_path / "sweep").iterdir():
        if run.is_dir():
            s, c = summary(run), yaml.safe_load((run / record.CONFIG).read_text())
            statuses[(c["data"]["path"] == str(good), c["optim"]["lr"])] = s
    assert statuses[(True, 0.01)]["status"] == "completed"
    diverged = statuses[(True, 1e4)]
    assert diverged["status"] == "diverged" and diverged["epochs_completed"] < 4
    for lr in (0.01, 1e4):
        assert statuses[(False, lr)]["status"] == "failed"
        assert "FileNotFoundError" in statuses[(False, lr)]["error"]


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    args = ["epochs=40", "data.n_samples=8000", "width=96", "depth=3", "batchnorm=true",
            "dropout=0.1", "gradcheck=false", "threads=1"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(RUN_PY), *args, f"hydra.run.dir={killed}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = killed / record.METRICS, time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 6:  # epochs 0..4
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert summary(killed)["status"] == "running", "finished before the kill: make it slower"
    assert len(read_rows(metrics)) < 41
    assert cli(*args, f"hydra.run.dir={killed}", cwd=tmp_path).returncode == 0
    straight = tmp_path / "straight"
    assert cli(*args, f"hydra.run.dir={straight}", cwd=tmp_path).returncode == 0
    a, b = summary(killed), summary(straight)
    assert a["status"] == b["status"] == "completed" and a["resumes"] == 1
    assert without_timing(read_rows(killed / record.METRICS)) == \
        without_timing(read_rows(straight / record.METRICS))
    assert read_rows(killed / record.LAYERS) == read_rows(straight / record.LAYERS)
    assert a["test"] == b["test"] and a["best"] == b["best"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
])
def test_parallel_launchers_complete_a_two_run_sweep(launcher: list[str], tmp_path: Path) -> None:
    res = cli("-m", "activation=relu,tanh", *TINY, "gradcheck=false", *launcher,
              "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep finished: 2 runs: 2 completed" in res.stdout
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob(f"*/{record.SUMMARY}"))
    assert [summary(r)["status"] for r in runs] == ["completed", "completed"]
    if "joblib" in launcher[0]:
        assert all(summary(r)["threads"] == max(1, len(os.sched_getaffinity(0)) // 2) for r in runs)


@pytest.mark.slow
def test_the_optuna_preset_runs_trials_and_reports_the_best(tmp_path: Path) -> None:
    res = cli("-m", "+experiment=optuna_lr", "hydra.sweeper.n_trials=3", "epochs=2",
              "data.n_samples=200", "gradcheck=false", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep finished: 3 runs: 3 completed" in res.stdout
    best = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    runs = [summary(p.parent) for p in (tmp_path / "sweep").glob(f"*/{record.SUMMARY}")]
    assert len(runs) == 3
    assert f"best_value: {max(r['best']['best_val_acc'] for r in runs)}" in best


@pytest.mark.parametrize("gc_before", [True, False])
def test_importing_run_leaves_the_collector_as_it_found_it_and_freezes_the_imports(
        gc_before: bool) -> None:
    code = (f"import gc; gc.enable() if {gc_before} else gc.disable(); import experiments.run; "
            "print(gc.isenabled(), gc.get_freeze_count() > 100000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(gc_before), "True"]
