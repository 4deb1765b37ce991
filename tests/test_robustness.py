"""Nothing silently wrong, nothing written twice: each test reproduces one failure of issue 10."""

from __future__ import annotations

import csv
import errno
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from experiments.harness.build import GRADCHECK_DIRECTIONS, build, gradcheck_probe
from experiments.harness.jobs import AUTO_THREADS_MIN_FLOPS, JobInfo, cores_per_job, resolve_threads
from experiments.harness.names import inside, run_name
from experiments.harness.preflight import PreflightError, plan
from experiments.harness.rundir import RunDir, RunDirBusy
from experiments.paths import CONF_DIR, RUN_PY
from experiments.run import train
from mlp_core.data import load_dataset
from mlp_core.gradcheck import gradcheck, gradcheck_directions
from mlp_core.model import MLPClassifier
from mlp_core.optim import SGD, LRSchedule
from mlp_core.train import TrainConfig, Trainer
from tests.helpers import cli


# ---------------------------------------------------------------- 4. user CSVs
def _rows(target: list[str], a: list[str] | None = None) -> str:
    a = a or [str(i * 0.5) for i in range(len(target))]
    return "a,b,y\n" + "".join(f"{x},{i % 3},{t}\n" for i, (x, t) in enumerate(zip(a, target, strict=True)))


REGRESSION = [f"{i * 0.37:.2f}" for i in range(30)]
CSV_CASES = {  # name -> (file text, message naming what and where; line 1 is the header)
    "nan_in_regression_target": (_rows(REGRESSION[:5] + ["nan"] + REGRESSION[6:]),
                                 r"non-finite value 'nan' in target column 'y', row 7$"),
    "empty_target_cell": (_rows(["0", "1"] * 5 + [""] + ["1"] * 5),
                          r"missing value in target column 'y', row 12$"),
    "duplicate_column_names": ("a,a,y\n" + "1,2,0\n3,4,1\n" * 10,
                               r"duplicate column name 'a' \(columns 1 and 2\)$"),
    "feature_that_overflows_the_std": (_rows(["0", "1"] * 10, ["1e300", "-1e300"] * 10),
                                       r"feature column 'a' overflows float64 .* at row 2\); rescale it$"),
    "inf_feature": (_rows(["0", "1"] * 10, ["1"] * 3 + ["inf"] + ["2"] * 16),
                    r"non-finite value 'inf' in feature column 'a', row 5$"),
    "single_class": (_rows(["1"] * 20), r"target column 'y' has a single class \(1\)"),
    "mixed_numbers_and_text": (_rows(["0", "1"] * 5 + ["cat"] + ["1"] * 5),
                               r"target column 'y' mixes numbers and text \(row 12: 'cat'\)"),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_a_bad_user_csv_is_refused_naming_file_column_and_row(case: str, tmp_path: Path) -> None:
    text, match = CSV_CASES[case]
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        load_dataset("csv", path=str(path), target="y")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_csv_directory_or_latin1_file_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"csv path {tmp_path} is a directory"):
        load_dataset("csv", path=str(tmp_path), target="y")
    path = tmp_path / "l.csv"
    path.write_bytes("a,b,y\n1,2,0\n3,4,1\n5,6,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"csv file {path}: line 4 is not valid UTF-8"):
        load_dataset("csv", path=str(path), target="y")


def test_a_mixed_target_is_a_label_set_when_the_task_says_classification(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(_rows(["0", "1"] * 5 + ["cat"] + ["1"] * 5))
    d = load_dataset("csv", path=str(path), target="y", task="classification")
    assert d.classes == ("0", "1", "cat")


# ---------------------------------------------------------------- 5. keys
@pytest.mark.parametrize("override", ["+optim.momentun=0.5", "optim.momentun=0.5",
                                      "+foo=1", "+data.bogus=1"])
def test_an_unknown_key_is_refused_with_or_without_plus(override: str) -> None:
    key = override.lstrip("+").split("=")[0]
    with pytest.raises(PreflightError, match=f"unknown key {key} "):
        plan([override], CONF_DIR)


def test_notes_and_tags_are_free_and_stay_out_of_the_run_dir_name() -> None:
    p = plan(["-m", "+notes.author=me", "tags=[a,b]", "seed=0,1"], CONF_DIR)
    assert p is not None and p.n_jobs == 2
    assert p.configs[0].notes.author == "me" and list(p.configs[0].tags) == ["a", "b"]
    assert run_name(["+notes.author=me", "tags=[a,b]", "seed=0"], ["notes", "tags"]) == "seed=0"


@pytest.mark.parametrize("value", ["../..", "../../../../ESCAPED", "a/b", "a\\b", "x\x00y",
                                   "..", "...."])
def test_run_dir_names_have_no_separators_or_dot_dot(value: str, tmp_path: Path) -> None:
    name = run_name([f"data.target={value}", "seed=0"])
    assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    assert inside(tmp_path / f"0_{name}", tmp_path)


def test_a_run_dir_outside_the_sweep_dir_is_refused_before_anything_exists() -> None:
    with pytest.raises(PreflightError, match="not inside hydra.sweep.dir"):
        plan(["-m", "seed=0,1", "hydra.sweep.subdir=../x"], CONF_DIR)


@pytest.mark.slow
def test_dot_dot_values_create_nothing_outside_the_sweep_dir(tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    r = cli("-m", "+foo=../../ESCAPED", "hydra.sweep.dir=s", cwd=work)
    assert r.returncode == 2 and "unknown key foo" in r.stderr
    r = cli("-m", "data=csv", f"data.path={csv}", "data.target=../..", "epochs=1",
            "hydra.sweep.dir=s", "+notes=hi", cwd=work)
    assert r.returncode == 1  # the target column does not exist: a failed run, recorded
    runs = [p.name for p in (work / "s").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert runs == ["0_data.target=___,data=csv,epochs=1"]
    outside = sorted(p.name for p in tmp_path.rglob("*") if not inside(p, work / "s"))
    # besides the sweep dir itself, only the harness's own 'latest' link beside it, into it
    assert outside == sorted(["a", "b", "d.csv", "latest", "s"])
    assert (work / "latest").is_symlink() and (work / "latest").resolve() == (work / "s").resolve()


# ---------------------------------------------------------------- 7. early, clear failures
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7", "mps"])
def test_a_device_the_machine_lacks_is_refused_before_any_dir(device: str, monkeypatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PreflightError, match=f"device={device} .*no (CUDA|MPS) device"):
        plan(["-m", f"device={device}", "seed=0,1"], CONF_DIR)
    assert list(tmp_path.iterdir()) == []


def test_a_cuda_index_beyond_the_device_count_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PreflightError, match="device=cuda:2 .*2 CUDA device.*cuda:0 .. cuda:1"):
        plan(["device=cuda:2"], CONF_DIR)


def test_batchnorm_with_a_batch_of_one_is_refused_and_a_trailing_one_dropped() -> None:
    with pytest.raises(PreflightError, match="batch_size=1 .*>= 2 with batchnorm=true"):
        plan(["batchnorm=true", "batch_size=1"], CONF_DIR)
    model = MLPClassifier(2, 2, [4], batchnorm=True, dtype=torch.float64, seed=0)
    with torch.inference_mode(), pytest.raises(ValueError, match="at least 2 samples, got 1"):
        model.forward(torch.zeros(1, 2, dtype=torch.float64), train=True)
    data = load_dataset("moons", n_samples=45, val_frac=0.2, test_frac=0.2)  # 27 train rows
    n_train = data.X_train.shape[0]
    assert n_train % 13 == 1  # two batches of 13 and a trailing batch of 1
    model = MLPClassifier(2, 2, [4], batchnorm=True, seed=0)
    trainer = Trainer(model, SGD(model.params, lr=0.1), LRSchedule(0.1, 1), data,
                      TrainConfig(epochs=1, batch_size=13))
    records = list(trainer.run())
    assert trainer.step == 2 and trainer.status == "completed" and len(records) == 2


# ---------------------------------------------------------------- 9. gradient check
def test_the_issue_false_alarm_deep_normal_init_on_digits_passes() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
        cfg = compose(config_name="config",
                      overrides=["data=digits", "depth=10", "init=normal", "seed=2"])
    b = build(cfg)
    with torch.inference_mode():
        err = gradcheck(b.model, *gradcheck_probe(b.data))  # was 2.2e-3 > 1e-4
        run_time = gradcheck_directions(b.model, *gradcheck_probe(b.data),
                                        per_tensor=GRADCHECK_DIRECTIONS)  # what run.py runs
    assert err <= cfg.gradcheck_tol and run_time <= cfg.gradcheck_tol


@pytest.mark.parametrize("depth", [2, 10, 30])
def test_gradcheck_has_no_false_alarm_over_inits_activations_and_seeds(depth: int) -> None:
    worst = {}
    for init, act, seed in itertools.product(["he", "xavier", "normal", "uniform"],
                                             ["relu", "sigmoid", "tanh"], range(5)):
        gen = torch.Generator().manual_seed(seed)
        X, y = torch.randn(8, 6, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        model = MLPClassifier(6, 10, [8] * depth, activation=act, init=init, seed=seed)
        with torch.inference_mode():
            worst[init, act, seed] = gradcheck(model, X, y, n_checks=24, per_tensor=1)
            worst[init, act, seed, "directions"] = gradcheck_directions(  # what run.py runs
                model, X, y, per_tensor=GRADCHECK_DIRECTIONS, seed=seed)
    bad = {k: f"{v:.1e}" for k, v in worst.items() if not v <= 1e-4}
    assert not bad


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_gradcheck_catches_a_backward_wrong_by_one_percent_in_deep_nets(act: str,
                                                                        monkeypatch) -> None:
    import mlp_core.model as model_mod

    real = model_mod.act_backward
    monkeypatch.setattr(model_mod, "act_backward", lambda *a: real(*a) * 1.01)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 6, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    model = MLPClassifier(6, 10, [8] * 10, activation=act, init="xavier", seed=0)
    with torch.inference_mode():
        assert gradcheck(model, X, y, n_checks=24, per_tensor=1) > 1e-3
        assert gradcheck_directions(model, X, y, per_tensor=GRADCHECK_DIRECTIONS) > 1e-3


# ---------------------------------------------------------------- 6. text in figures
def test_a_value_with_math_text_renders_in_every_figure(tmp_path: Path) -> None:
    from experiments import compare
    from experiments.benchmarks.fake_sweep import make_known_sweep

    runs = [{"levels": {"data.target": t, "width": w}, "seed": s, "final": 0.5 + 0.1 * s}
            for t in ("$\\foo$", "a_{b}^c $x") for w in (8, 16) for s in range(2)]
    sweep = make_known_sweep(tmp_path / "s", runs)
    out = tmp_path / "out"
    assert compare.main([str(sweep), "--out", str(out)]) == 0
    assert len(list(out.glob("*.png"))) >= 2


# ---------------------------------------------------------------- in-process runs
TINY = ["epochs=4", "width=8", "data.n_samples=200", "gradcheck=false"]
TIMING = ("epoch_time_s", "samples_per_s")


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
        return compose(config_name="config", overrides=list(overrides))


def stop_after(monkeypatch, epoch: int) -> None:
    """Make the run stop cleanly (as on SIGTERM) once `epoch` is written."""
    from experiments.harness import signals

    seen = {"n": -2}  # train() asks once before it starts (a sweep's stop), then after each epoch

    def requested() -> str | None:
        seen["n"] += 1
        return "SIGTERM" if seen["n"] >= epoch else None

    monkeypatch.setattr(signals, "requested", requested)


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


# ---------------------------------------------------------------- 1. two writers on one run
def test_a_locked_run_dir_is_busy_and_left_untouched(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with RunDir(run_dir).lock():
        s = train(compose_cfg(*TINY), run_dir)
    assert s["status"] == "busy" and f"pid {os.getpid()}" in s["error"]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    assert train(compose_cfg(*TINY), run_dir)["status"] == "completed"  # released


def test_a_dead_owners_lock_is_free_again(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from experiments.harness.rundir "
            "import RunDir; l = RunDir(Path(sys.argv[1])).lock(); print('held', flush=True); "
            "time.sleep(600)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusy, match=f"pid {p.pid}"):
            RunDir(tmp_path).lock()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    RunDir(tmp_path).lock().release()  # the kernel dropped the dead process's lock


@pytest.mark.slow
def test_two_sweeps_at_once_into_one_dir_write_every_epoch_once(tmp_path: Path) -> None:
    args = [str(RUN_PY), "-m", "seed=0,1,2,3", "epochs=30", "width=8", "data.n_samples=200",
            "gradcheck=false", "threads=1", f"hydra.sweep.dir={tmp_path / 's'}"]
    procs = [subprocess.Popen([sys.executable, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    metrics = sorted((tmp_path / "s").glob("*/metrics.csv"))
    assert len(metrics) == 4
    for m in metrics:
        assert [int(r["epoch"]) for r in rows_of(m)] == list(range(31)), m
        assert json.loads((m.parent / "summary.json").read_text())["status"] == "completed"
        log_text = (m.parent / "run.log").read_text()
        assert log_text.count("completed after") == 1, m
    tallies = " ".join(o for o in outs if "sweep finished" in o)
    assert tallies.count("sweep finished") == 2


# ---------------------------------------------------------------- 2. torn tail
def test_a_torn_metrics_tail_is_cut_and_the_resumed_run_ends_as_an_unbroken_one(
        monkeypatch, tmp_path: Path) -> None:
    whole = train(compose_cfg(*TINY), tmp_path / "whole")
    run_dir = tmp_path / "torn"
    with monkeypatch.context() as m:
        stop_after(m, 2)
        assert train(compose_cfg(*TINY), run_dir)["status"] == "interrupted"
    with (run_dir / "metrics.csv").open("ab") as f:
        f.write(b"3,12,0.01,0.6" + b"\0" * 512)  # a partial row, then a power loss's NULs
    with (run_dir / "layers.csv").open("ab") as f:
        f.write(b"3,0,fc0,0.1")
    resumed = train(compose_cfg(*TINY), run_dir)
    assert resumed["status"] == "completed" and resumed["resumes"] == 1
    assert rows_of(run_dir / "metrics.csv") == rows_of(tmp_path / "whole" / "metrics.csv")
    assert resumed["best"] == whole["best"]
    log_text = (run_dir / "run.log").read_text()
    assert f"{run_dir / 'metrics.csv'}: cut a torn tail" in log_text
    assert f"{run_dir / 'layers.csv'}: cut a torn tail" in log_text


# ---------------------------------------------------------------- 3. resume window
def test_a_kill_right_after_resume_keeps_the_recorded_progress(monkeypatch,
                                                              tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_after(m, 2)
        before = train(compose_cfg(*TINY), run_dir)
    seen = {}

    class Killed(BaseException):
        """A SIGKILL: nothing of the harness runs after it (a KeyboardInterrupt is a clean stop)."""

    def killed(*a, **k):  # the kill lands after "resume ->", before the data is built
        seen.update(json.loads((run_dir / "summary.json").read_text()))
        raise Killed

    monkeypatch.setattr("experiments.run.build", killed)
    with pytest.raises(Killed):
        train(compose_cfg(*TINY), run_dir)
    for key in ("epochs_completed", "final", "best", "wall_time_s", "n_params", "task"):
        assert seen[key] == before[key], key
    assert seen["epochs_completed"] == 2 and seen["wall_time_s"] > 0


# ---------------------------------------------------------------- 7. disk full, checkpoints
def test_a_full_disk_says_so_keeps_every_complete_row_and_records_failed(monkeypatch,
                                                                         tmp_path: Path) -> None:
    from experiments.harness import rundir

    real, calls = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 0's rows land (each log's first fsync); then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(rundir.os, "fsync", fsync)
    run_dir = tmp_path / "run"
    s = train(compose_cfg(*TINY), run_dir)
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == on_disk["status"] == "failed"
    assert "No space left on device: " + str(run_dir) in on_disk["error"]
    rows = rows_of(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows))) and rows
    assert (run_dir / "metrics.csv").read_bytes().endswith(b"\n")


def test_a_checkpoint_from_a_longer_run_or_another_config_is_refused(monkeypatch,
                                                                     tmp_path: Path) -> None:
    long_dir, short_dir = tmp_path / "long", tmp_path / "short"
    assert train(compose_cfg(*TINY, "epochs=6"), long_dir)["status"] == "completed"
    with monkeypatch.context() as m:
        stop_after(m, 1)
        train(compose_cfg(*TINY), short_dir)
    shutil.copy(long_dir / "checkpoint.pt", short_dir / "checkpoint.pt")
    s = train(compose_cfg(*TINY), short_dir)
    assert s["status"] == "failed" and "at epoch 6 but this run has epochs=4" in s["error"]
    other = tmp_path / "other"
    with monkeypatch.context() as m:
        stop_after(m, 1)
        train(compose_cfg(*TINY, "seed=1"), other)
    shutil.copy(other / "checkpoint.pt", short_dir / "checkpoint.pt")
    s = train(compose_cfg(*TINY), short_dir)
    assert s["status"] == "failed" and "belongs to another config (seed: 1 -> 0)" in s["error"]


# ---------------------------------------------------------------- 8. threads
def test_threads_auto_is_one_for_small_nets_under_every_launcher_and_pinned_on_resume(
        monkeypatch, tmp_path: Path) -> None:
    for launcher, parallel in (("basic", 1), ("joblib", 2), ("joblib", 1), ("other", 0)):
        job = JobInfo(launcher=launcher, parallel=parallel)
        assert resolve_threads("auto", job, 6 * 64 * 300_000) == 1  # a width-512 digits net
    assert resolve_threads("auto", JobInfo(), 2 * AUTO_THREADS_MIN_FLOPS) == cores_per_job(
        JobInfo())
    assert resolve_threads("2", JobInfo(), 0.0) == 2
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_after(m, 1)
        first = train(compose_cfg(*TINY, "threads=1"), run_dir)
    assert first["threads"] == 1
    resumed = train(compose_cfg(*TINY, "threads=2"), run_dir)
    assert resumed["status"] == "completed" and resumed["threads"] == 1
    assert torch.get_num_threads() == 1


def test_env_json_lists_every_package_as_importlib_metadata_reads_it() -> None:
    from importlib import metadata

    from experiments.harness.environment import packages

    seen: dict[str, str] = {}
    for d in metadata.distributions():  # the full (slow) metadata parse
        name = d.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={d.version}"
    assert packages() == tuple(seen[k] for k in sorted(seen))
    assert any(p.startswith("torch==") for p in packages())
