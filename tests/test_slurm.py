"""Sweeps on a real SLURM cluster (submitit_slurm): tally, cancel, time limit, requeue, threads.

They need a SLURM node: `tests/cluster/slurm.sh up` starts a single-node cluster on this
machine (`.ci/run` does it before `make test`). Without one they skip, saying so.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from experiments.harness import (
    schema,  # noqa: F401 (registers the structured configs)
    signals,
)
from experiments.harness.jobs import AUTO_THREADS_MIN_FLOPS, job_info, resolve_threads
from experiments.paths import COMPARE_PY, CONF_DIR, RUN_PY

PARTITION = "cpu"  # the one partition tests/cluster/slurm.sh creates
TIMING = ("epoch_time_s", "samples_per_s")
REQUEUE_SETTLE_S = 3.0  # how long a requeued job is held before the tests start it
REFERENCE_CATCH_UP_S = 300.0  # how long a never-stopped reference run may take to catch up
# Every job: one CPU; a worker that inherits nothing from the launching process's environment
# (--export=NONE; srun then passes on only what the batch script itself sets), as on a
# cluster whose nodes start jobs from a clean login environment.
SLURM = ["hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}",
         "hydra.launcher.cpus_per_task=1", "+hydra.launcher.additional_parameters.export=NONE",
         "hydra.launcher.setup=[unset SLURM_EXPORT_ENV]"]
TINY = ["epochs=3", "width=8", "data.n_samples=200", "gradcheck=false"]
# A run of several seconds at one thread, slow enough to be stopped in the middle.
LONG = ["data.n_samples=8000", "width=96", "depth=3", "batchnorm=true", "dropout=0.1",
        "gradcheck=false", "threads=1"]


def node() -> tuple[str, int, str]:
    """(state, CPUs, what sinfo said) of the partition's node; state "" without a node."""
    if shutil.which("sinfo") is None:
        return "", 0, "sinfo not found"
    try:
        p = subprocess.run(["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%T %c"],
                           capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "", 0, "sinfo got no answer within 20 s"
    words = p.stdout.split()
    if p.returncode != 0 or len(words) < 2:
        said = (p.stderr.strip().splitlines() or ["no node in partition " + PARTITION])[0]
        return "", 0, f"sinfo: {said}"
    return words[0], int(words[1]), f"node {words[0]}"


@pytest.fixture(scope="module")
def cpus() -> int:
    """The node's CPU count; skips the module's cluster tests when no SLURM node is up."""
    state, n, said = node()
    if state.rstrip("*~#!%$@^-") not in ("idle", "mixed", "allocated", "completing"):
        pytest.skip(f"no SLURM node up ({said}): start one with `tests/cluster/slurm.sh up` "
                    "(as root; .ci/run does it before make test)")
    return n


def run_py(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def n_rows(path: Path) -> int:
    """Rows of a CSV file so far (0 before it exists)."""
    return len(rows(path)) if path.exists() else 0


def without_timing(rs: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def the_run(sweep: Path) -> Path:
    runs = [p.parent for p in sweep.glob("*/summary.json")]
    assert len(runs) == 1, runs
    return runs[0]


def wait_for_epoch(sweep: Path, epoch: int, proc: subprocess.Popen[str], limit: float = 300
                   ) -> Path:
    """The sweep's only run dir once its metrics.csv holds `epoch`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        for m in sweep.glob("*/metrics.csv"):
            if len(m.read_text().splitlines()) >= epoch + 2:  # header + epochs 0..epoch
                return m.parent
        time.sleep(0.1)
    raise AssertionError(f"no epoch {epoch} within {limit} s")


def slurm_jobs(sweep: Path) -> list[str]:
    """SLURM ids of the sweep's jobs that started, oldest first (submitit's log folders)."""
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"), key=lambda p: p.stat().st_mtime)
    return [p.parent.name for p in logs]


def slurm_job(sweep: Path) -> str:
    """The SLURM id of the sweep's latest job."""
    jobs = slurm_jobs(sweep)
    assert jobs, f"no job started in {sweep}"
    return jobs[-1]


def kill_outright(job: str) -> None:
    """SIGKILL the job's task processes, as the OOM killer or a lost node would (`scancel
    --signal=KILL` is a plain cancel: SIGTERM first)."""
    out = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True,
                         check=True).stdout
    pids = [int(w[0]) for w in map(str.split, out.splitlines()[1:]) if len(w) >= 3 and w[2] == "0"]
    assert pids, out
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start run.py in the background; at the end, stop what is left (processes, SLURM jobs)."""
    procs: list[subprocess.Popen[str]] = []

    def _start(*args: str) -> subprocess.Popen[str]:
        procs.append(subprocess.Popen(
            [sys.executable, str(RUN_PY), *args], cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}))
        return procs[-1]

    yield _start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()
    jobs = slurm_jobs(tmp_path / "sweep")
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def assert_same_run(resumed: Path, straight: Path) -> None:
    """Bit for bit: every metric and layer row, best and test metrics (timing aside)."""
    assert without_timing(rows(resumed / "metrics.csv")) == \
        without_timing(rows(straight / "metrics.csv"))
    assert rows(resumed / "layers.csv") == rows(straight / "layers.csv")
    a, b = summary(resumed), summary(straight)
    assert a["status"] == b["status"] == "completed"
    assert a["best"] == b["best"] and a["test"] == b["test"]


@pytest.fixture
def release_requeued() -> Iterator[None]:
    """Slurm holds a requeued job for 2 minutes (BeginTime); start it after a few seconds instead.
    Not at once: slurmd revokes the old attempt's credential by the second, so an attempt started
    within the second of the requeue is killed ("Job credential revoked") and the job FAILS."""
    import threading

    stop = threading.Event()
    held_since: dict[str, float] = {}

    def loop() -> None:
        while not stop.wait(1.0):
            p = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True,
                               text=True)
            for line in p.stdout.splitlines():
                job, _, reason = line.partition(" ")
                if reason.strip() != "BeginTime":
                    continue
                first = held_since.setdefault(job, time.monotonic())
                if time.monotonic() - first >= REQUEUE_SETTLE_S:
                    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"],
                                   capture_output=True)
                    del held_since[job]

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield
    stop.set()
    t.join()


# ------------------------------------------------------------- no cluster needed
def test_threads_auto_under_slurm_takes_cpus_per_task(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "hydra/launcher=submitit_slurm", "hydra.launcher.cpus_per_task=1",
            f"hydra.sweep.dir={tmp_path}", "hydra.job.num=0", "hydra.runtime.output_dir=."])
    hydra_config = HydraConfig.instance()
    before = hydra_config.cfg
    hydra_config.set_config(cfg)
    try:
        job = job_info()
        assert job.launcher == "submitit_slurm"
        big = 2 * AUTO_THREADS_MIN_FLOPS  # a step large enough for more than one thread
        assert resolve_threads("auto", job, big) == 1  # cpus_per_task, not the machine's cores
        assert resolve_threads("3", job, big) == 3
    finally:
        hydra_config.cfg = before  # other tests run outside Hydra


def test_in_a_submitit_job_signals_stop_only_this_job_and_usr2_goes_on_to_submitit(
        tmp_path: Path) -> None:
    calls: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # submitit's
    stop_file = tmp_path / ".launch" / "x" / signals.STOP_FILE  # the launch's, shared by its jobs
    try:
        assert signals.install_in_submitit_job()
        signals.install(stop_file)  # as every launcher's worker process does
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # srun forwards SLURM's SIGTERM again: no escalation
        assert signals.requested() == "SIGTERM"
        assert not stop_file.exists()  # scancel of one job: the launch's other jobs go on
        signals.uninstall()
        signals.set_stop_file(None)
        assert signals.install_in_submitit_job() and signals.requested() is None
        signals.install(stop_file)
        stop_file.parent.mkdir(parents=True)
        stop_file.write_text("SIGINT\n")  # Ctrl-C in the launching process stops the job too
        assert signals.requested() == "SIGINT"
        stop_file.unlink()
        signals.uninstall()
        signals.set_stop_file(None)
        assert signals.install_in_submitit_job()
        os.kill(os.getpid(), signal.SIGUSR2)  # the time-limit warning: first a clean stop ...
        assert signals.requested() == "SIGUSR2" and calls == []
        signals.pass_on()  # ... then submitit's handler (which requeues)
        assert calls == [signal.SIGUSR2] and signals.requested() is None
    finally:
        signals.uninstall()
        signals.set_stop_file(None)
        for s, h in before.items():
            signal.signal(s, h)


# ------------------------------------------------------------- on the cluster
@pytest.mark.slurm
@pytest.mark.slow
def test_a_four_run_sweep_completes_on_workers_without_our_environment_and_compare_reads_it(
        cpus: int, tmp_path: Path) -> None:
    res = run_py("-m", *SLURM, "hydra.launcher.timeout_min=5", "activation=relu,tanh", "seed=0,1",
                 *TINY, "threads=auto", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep finished: 4 runs: 4 completed" in res.stdout
    sweep = tmp_path / "sweep"
    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(runs) == 4
    logs = "".join((r / "run.log").read_text() for r in runs)
    for k in range(1, 5):  # numbering from the config: each job knows its place and the count
        assert f"[run {k} of 4]" in logs
    for r in runs:
        s = summary(r)
        assert s["status"] == "completed" and s["epochs_completed"] == 3
        assert s["threads"] == 1  # threads=auto under SLURM: cpus_per_task
    assert len(list((sweep / ".submitit").glob("*_*/*_log.out"))) == 4  # submitit's logs
    comp = subprocess.run([sys.executable, str(COMPARE_PY), str(sweep)], capture_output=True,
                          text=True, timeout=300)
    assert comp.returncode == 0, comp.stderr
    assert (sweep / "compare" / "report.html").exists()
    assert len(rows(sweep / "compare" / "runs.csv")) == 4


@pytest.mark.slurm
@pytest.mark.slow
def test_more_cpus_than_a_node_has_fails_fast_with_one_clear_line(cpus: int, tmp_path: Path
                                                                  ) -> None:
    too_many = f"hydra.launcher.cpus_per_task={cpus + 1}"
    res = run_py("-m", *SLURM, too_many, "activation=relu,tanh", *TINY,
                 "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: {too_many}: the largest node of partition {PARTITION} "
                                  f"has {cpus} CPUs (sinfo), so SLURM can never run these jobs")
    assert not (tmp_path / "sweep").exists()
    # and the cluster itself refuses such a job at once rather than letting it pend forever
    p = subprocess.run(["sbatch", "-p", PARTITION, "-c", str(cpus + 1), "--wrap", "true"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "error" in p.stderr


@pytest.mark.slurm
@pytest.mark.slow
def test_a_killed_then_a_cancelled_job_each_leave_a_tally_exit_1_and_resume_bit_for_bit(
        cpus: int, tmp_path: Path, start: Callable[..., subprocess.Popen[str]]) -> None:
    args = ["-m", *SLURM, "hydra.launcher.timeout_min=10", *LONG, "epochs=16",
            "hydra.sweep.dir=sweep"]
    sweep = tmp_path / "sweep"
    reference = start(*LONG, "epochs=16", "hydra.run.dir=straight")
    # 1. killed outright: the job leaves no result, submitit raises, the tally is printed anyway
    proc = start(*args)
    run = wait_for_epoch(sweep, 2, proc)
    kill_outright(slurm_job(sweep))
    out = finish(proc)
    assert proc.returncode == 1, out
    assert "sweep finished: 0 runs: none" in out, out
    assert "1 of 1 job(s) did not report" in out and "the launcher stopped" in out
    resume = shlex.join(["python", "experiments/run.py", *args[:-1], "hydra.sweep.dir=sweep"])
    assert f"resume: {resume}" in out
    killed_at = int(rows(run / "metrics.csv")[-1]["epoch"])  # summary.json may lag a kill
    assert killed_at >= 2 and summary(run)["status"] == "running"
    # 2. the same command resumes it; scancel (SIGTERM, then SIGKILL after KillWait) stops it
    # cleanly: interrupted after a complete epoch, its checkpoint and rows consistent
    proc = start(*args)
    wait_for_epoch(sweep, killed_at + 2, proc)
    subprocess.run(["scancel", slurm_job(sweep)], check=True)
    out = finish(proc)
    assert proc.returncode == 1, out
    assert "sweep stopped: 1 run: 1 interrupted (1 resumed)" in out, out
    s = summary(run)
    assert s["status"] == "interrupted" and killed_at + 2 <= s["epochs_completed"] < 16
    assert "SIGTERM" in s["error"] and (run / "checkpoint.pt").exists()
    assert [int(r["epoch"]) for r in rows(run / "metrics.csv")] == \
        list(range(s["epochs_completed"] + 1))
    # 3. and once more: it finishes, bit for bit the run that was never stopped
    res = run_py(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "sweep finished: 1 run: 1 completed (1 resumed)" in res.stdout
    assert summary(run)["resumes"] == 2
    finish(reference)
    assert reference.returncode == 0
    assert_same_run(run, tmp_path / "straight")


@pytest.mark.slurm
@pytest.mark.slow
def test_time_limit_requeues_from_the_checkpoint_then_ends_interrupted_bit_for_bit(
        cpus: int, tmp_path: Path, start: Callable[..., subprocess.Popen[str]],
        release_requeued: None) -> None:
    # timeout_min=1 with submitit's warning 10 s before it: SLURM sends USR2 20-50 s into each
    # attempt (its time-limit check runs every 30 s). max_num_timeout=1: the first attempt is
    # requeued and continues from its checkpoint; the second is not, and ends interrupted.
    endless = "epochs=100000"
    args = ["-m", *SLURM, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10",
            "hydra.launcher.max_num_timeout=1", *LONG, endless, "hydra.sweep.dir=sweep"]
    reference = start(*LONG, endless, "hydra.run.dir=straight")
    straight = tmp_path / "straight"
    try:
        proc = start(*args)
        out = finish(proc, timeout=400)
        assert proc.returncode == 1, out
        assert "sweep stopped: 1 run: 1 interrupted (1 resumed)" in out, out
        run = the_run(tmp_path / "sweep")
        s = summary(run)
        n = s["epochs_completed"] + 1
        # the never-stopped run shares the cores with the job and may lag it: let it reach
        # the job's last epoch (both layers.csv and metrics.csv), whatever the load
        deadline = time.monotonic() + REFERENCE_CATCH_UP_S
        while time.monotonic() < deadline and reference.poll() is None and not (
                n_rows(straight / "metrics.csv") > n
                and n_rows(straight / "layers.csv") >= n_rows(run / "layers.csv")):
            time.sleep(1)
    finally:
        reference.kill()
        reference.wait()
    assert s["status"] == "interrupted" and s["resumes"] == 1 and "SIGUSR2" in s["error"]
    assert (run / "run.log").read_text().count("resume ->") == 1  # the requeued attempt
    # every row so far, through the requeue, equals the never-stopped run's
    got, want = rows(run / "metrics.csv"), rows(straight / "metrics.csv")
    assert [int(r["epoch"]) for r in got] == list(range(n)) and len(want) >= n
    assert without_timing(got) == without_timing(want[:n])
    layers = rows(run / "layers.csv")
    assert layers == rows(straight / "layers.csv")[:len(layers)]
