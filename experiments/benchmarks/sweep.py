"""Sweep throughput: the same runs through run.py -m, sequential and with the joblib launcher."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from experiments import record
from experiments.paths import REPO, RUN_PY

# 8 runs (2 activations x 4 seeds) of ~13 s each at 400 epochs, one torch thread per run in both
# modes. Shorter runs cannot reach 1.7x on 2 cores: the joblib launcher costs ~3 s more up front
# (two worker processes importing torch, Hydra and, in their first job, scikit-learn).
FACTORS = ["activation=relu,tanh", "seed=0,1,2,3"]
FIXED = ["data=digits", "depth=3", "width=256", "threads=1"]


def sweep_command(sweep_dir: Path, epochs: int, n_jobs: int) -> list[str]:
    """The run.py multirun command line; n_jobs > 1 picks the joblib launcher."""
    cmd = [sys.executable, str(RUN_PY), "-m", *FIXED, f"epochs={epochs}",
           *FACTORS, f"hydra.sweep.dir={sweep_dir}"]
    if n_jobs > 1:
        cmd += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
    return cmd


def run_sweep(sweep_dir: Path, epochs: int, n_jobs: int = 1, timeout: float = 900) -> dict[str, Any]:
    """Wall time of the whole command and what the runs' summary.json files say."""
    cmd = sweep_command(sweep_dir, epochs, n_jobs)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    total = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"sweep failed ({res.returncode}): {res.stderr.strip()[-800:]}")
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{record.SUMMARY}"))]
    walls = [float(s["wall_time_s"]) for s in summaries]
    n = len(summaries)
    return {
        "total_s": total,
        "runs": n,
        "completed": sum(s["status"] == "completed" for s in summaries),
        "run_wall_mean_s": sum(walls) / max(n, 1),
        # everything outside the runs' own wall time, per job: interpreter and imports,
        # Hydra's config composition and launching, run-dir bookkeeping
        "overhead_per_job_s": (total - sum(walls)) / max(n, 1),
        "command": " ".join(["python", "experiments/run.py", *(a for a in cmd[2:]
                                                               if not a.startswith("hydra."))]),
    }


def startup_seconds(repeats: int = 2) -> float:
    """Best wall time of `run.py --cfg job`: interpreter, imports, Hydra composing the config
    once and printing it (`--help` costs 2 s more: it renders every preset's description)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(RUN_PY), "--cfg", "job"], cwd=REPO,
                       capture_output=True, check=True, timeout=120)
        best = min(best, time.perf_counter() - t0)
    return best


def compare_launchers(root: Path, epochs: int, n_jobs: int = 2) -> dict[str, Any]:
    """Run the sweep sequentially, then with n_jobs joblib workers; their speedup.

    Hydra's own cost per job (launching, composing, the run dir) is what the sequential sweep
    spends outside the runs' wall time, less the one-off start-up of the process."""
    startup = startup_seconds()
    seq = run_sweep(root / "sequential", epochs, 1)
    par = run_sweep(root / f"joblib{n_jobs}", epochs, n_jobs)
    per_job = seq["overhead_per_job_s"] - startup / max(seq["runs"], 1)
    return {"sequential": seq, "joblib": par, "speedup": seq["total_s"] / par["total_s"],
            "n_jobs": n_jobs, "startup_s": startup, "hydra_per_job_s": per_job}
