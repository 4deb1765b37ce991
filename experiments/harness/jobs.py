"""Where a job sits in its launch: job number and count, launcher, thread budget, outcome record."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from experiments.harness.launch import CALLBACK, Launch


@dataclass
class JobInfo:
    """This job's place: `num` of `total` in `sweep_dir` (multirun), launcher and its width."""

    multirun: bool = False
    num: int = 0
    total: int | None = None
    sweep_dir: Path | None = None
    launcher: str = "basic"  # basic | joblib | submitit_local | submitit_slurm | other
    parallel: int = 1  # jobs the launcher runs at once (0 = unknown)
    optuna: bool = False  # launched by the Optuna sweeper (which wants a float or an exception)
    launch: str = ""  # id of the launch (harness.launch.Launch); empty outside run.py's cli()

    @property
    def label(self) -> str:
        """`run 3 of 8` (1-based) in a sweep, empty for a single run."""
        if not self.multirun:
            return ""
        return f"run {self.num + 1} of {self.total}" if self.total else f"run {self.num + 1}"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def job_info() -> JobInfo:
    """Read the job's place from HydraConfig (a plain JobInfo outside Hydra)."""
    if not HydraConfig.initialized():
        return JobInfo()
    hc = HydraConfig.get()
    target = str(hc.launcher.get("_target_", ""))
    launcher, parallel = "other", 0
    if "BasicLauncher" in target:
        launcher, parallel = "basic", 1
    elif "Joblib" in target:
        n = int(hc.launcher.get("n_jobs", -1) or -1)
        launcher, parallel = "joblib", n if n > 0 else max(1, _cpus() + 1 + n)
    elif "Submitit" in target or "submitit" in target:
        launcher = "submitit_slurm" if "Slurm" in target else "submitit_local"
    if hc.mode != RunMode.MULTIRUN:
        return JobInfo(launcher=launcher, parallel=1)
    # The launch's id and size come in this job's own Hydra config (set by run.py's cli()).
    launch = hc.callbacks.get(CALLBACK) or {}
    total = int(launch.get("n_jobs") or 0)
    optuna = "Optuna" in str(hc.sweeper.get("_target_", ""))
    return JobInfo(True, int(hc.job.num), total or None, Path(hc.sweep.dir).resolve(), launcher,
                   parallel, optuna, str(launch.get("id") or ""))


# threads=auto: one thread below this many FLOPs per training step (6 x batch_size x n_params,
# forward + backward). Measured on the 2-core machine this project runs on while ~8 other agents
# loaded it (load average 13-18): two threads were 18-65x slower than one up to 0.13 GFLOP/step,
# 8x at 1.7 GFLOP (width 1024), 2.4x at 6.7 GFLOP (width 2048, batch 256); the trend crosses 1
# near 2e10. OpenMP threads that wait on a busy core stall every GEMM, so small nets want one.
AUTO_THREADS_MIN_FLOPS = 2e10


def cores_per_job(job: JobInfo) -> int:
    """This job's share of the machine: cores // parallel jobs under joblib, cpus_per_task (or
    cores // jobs for submitit_local) under submitit, every core under the basic launcher."""
    cpus = _cpus()
    if job.launcher == "joblib":
        return max(1, cpus // max(1, job.parallel))
    if job.launcher.startswith("submitit"):
        hc = HydraConfig.get()
        per_task = hc.launcher.get("cpus_per_task")
        if per_task:
            return max(1, min(cpus, int(per_task)))
        if job.launcher == "submitit_local" and job.total:
            return max(1, cpus // job.total)
    return cpus


def resolve_threads(threads: str, job: JobInfo, flops_per_step: float) -> int:
    """torch threads for this job: an explicit number, or (auto) 1 for a step below
    AUTO_THREADS_MIN_FLOPS and this job's share of the cores above it; the same rule under
    every launcher. The run records the count; a resume reuses it."""
    if threads != "auto":
        return int(threads)
    return 1 if flops_per_step < AUTO_THREADS_MIN_FLOPS else cores_per_job(job)


def record_outcome(job: JobInfo, outcome: dict[str, object]) -> None:
    """Leave this job's outcome where the launching process collects it at the sweep's end."""
    if job.multirun and job.launch and job.sweep_dir:
        Launch(job.launch, job.sweep_dir, job.total or 0).record(job.num, outcome)
