"""A study through experiments/run.py against the plain torch.nn script of the same runs.

Both are whole processes, alternated harness, plain, harness, plain, ... in one bench call; the
ratio of each pair is harness seconds / plain seconds. The harness runs with default settings
(threads=auto, gradcheck, per-epoch metrics, layers.csv, checkpoints). Where the harness's time
goes comes from the runs' summary.json `phases_s` plus two process-level parts: start-up
(`run.py --cfg job`: interpreter, imports, Hydra composing the config once) and Hydra's
per-job work.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.benchmarks.sweep import startup_seconds
from experiments.harness.phases import PHASES
from experiments.paths import REPO, RUN_PY

PLAIN_PY = Path(__file__).resolve().parent / "plain_study.py"
# the breakdown's rows, in order: process-level parts, then the phases inside the runs
PARTS = ("startup", "hydra", *PHASES, "other")
PART_LABELS = {
    "startup": "start-up (interpreter, imports, config)", "hydra": "Hydra per job (compose, launch)",
    "data": "data + model", "gradcheck": "gradient check", "train": "training steps",
    "eval": "evaluation (train, val, test)", "layers": "layer statistics",
    "writes": "writes (CSV, checkpoint, summary, log)", "other": "other (run dir, summary set-up)",
}


@dataclass(frozen=True)
class Study:
    """One study: its sweep factors and fixed settings, shared by run.py and the plain script."""

    key: str  # bench.py --studies
    name: str
    factors: tuple[str, ...]  # key=v1,v2 (the same syntax for both)
    fixed: tuple[str, ...]  # key=value for both (plain_study.py keys)
    target: float  # harness / plain at most this (median)

    def harness_cmd(self, sweep_dir: Path, epochs: int) -> list[str]:
        return [sys.executable, str(RUN_PY), "-m", *self.factors, *self.fixed, f"epochs={epochs}",
                "data=digits", "optim=sgd", "optim.lr=0.05", f"hydra.sweep.dir={sweep_dir}"]

    def plain_cmd(self, epochs: int) -> list[str]:
        return [sys.executable, str(PLAIN_PY), *self.factors, *self.fixed, f"epochs={epochs}",
                "lr=0.05"]

    def command(self, epochs: int) -> str:
        """The run.py command line as a user types it."""
        return " ".join(["python experiments/run.py -m", *self.factors, *self.fixed,
                         "data=digits optim=sgd optim.lr=0.05", f"epochs={epochs}"])


STUDIES = (
    Study("small", "digits 2×64, ReLU/sigmoid × 4 seeds", ("activation=relu,sigmoid", "seed=0,1,2,3"),
          (), 0.8),
    Study("bn", "digits 6×64 BatchNorm, ReLU/sigmoid × 4 seeds",
          ("activation=relu,sigmoid", "seed=0,1,2,3"), ("depth=6", "batchnorm=true"), 0.9),
)
QUICK_FACTORS = ("activation=relu,sigmoid", "seed=0")


def _run(cmd: list[str], timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed ({res.returncode}): "
                           f"{res.stderr.strip()[-800:]}")
    return wall, res.stdout


def harness_once(study: Study, sweep_dir: Path, epochs: int, timeout: float) -> dict[str, Any]:
    """One run.py -m process: wall seconds, and what its runs recorded (phases, files, accuracy)."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    wall, _ = _run(study.harness_cmd(sweep_dir, epochs), timeout)
    runs = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    summaries = [json.loads((d / "summary.json").read_text()) for d in runs]
    phases = {p: sum(float((s.get("phases_s") or {}).get(p, 0.0)) for s in summaries)
              for p in PHASES}
    run_walls = sum(float(s["wall_time_s"]) for s in summaries)
    phases["other"] = max(0.0, run_walls - sum(phases.values()))
    complete = all(
        s["status"] == "completed" and (d / "checkpoint.pt").exists() and (d / "layers.csv").exists()
        and sum(1 for _ in (d / "metrics.csv").open()) == epochs + 2  # header + epochs 0..E
        for d, s in zip(runs, summaries, strict=True))
    return {"wall_s": wall, "runs": len(runs), "run_walls_s": run_walls, "phases": phases,
            "complete": complete, "threads": sorted({s.get("threads") for s in summaries}),
            "val_acc": statistics.mean(s["final"]["val_acc"] for s in summaries)}


def plain_once(study: Study, epochs: int, timeout: float) -> dict[str, Any]:
    """One plain_study.py process: wall seconds, its runs' seconds and mean final val accuracy."""
    wall, out = _run(study.plain_cmd(epochs), timeout)
    lines = [json.loads(x) for x in out.strip().splitlines()]
    runs = [x for x in lines if "val_acc" in x]
    return {"wall_s": wall, "runs": len(runs), "run_walls_s": sum(x["wall_s"] for x in runs),
            "val_acc": statistics.mean(x["val_acc"] for x in runs)}


def measure(study: Study, root: Path, epochs: int, pairs: int, quick: bool = False,
            timeout: float = 1200) -> dict[str, Any]:
    """`pairs` alternated (harness, plain) processes; ratios, and the harness's breakdown."""
    if quick:
        study = Study(study.key, study.name.split(",")[0] + ", ReLU/sigmoid × 1 seed",
                      QUICK_FACTORS, study.fixed, study.target)
    startup = startup_seconds(1 if quick else 2)
    h_runs, p_runs = [], []
    for i in range(pairs):
        h_runs.append(harness_once(study, root / f"pair{i}", epochs, timeout))
        p_runs.append(plain_once(study, epochs, timeout))
    ratios = [h["wall_s"] / p["wall_s"] for h, p in zip(h_runs, p_runs, strict=True)]
    med = statistics.median
    n = h_runs[0]["runs"]
    parts = {"startup": startup}
    parts["hydra"] = max(0.0, med(h["wall_s"] - h["run_walls_s"] for h in h_runs) - startup)
    for p in (*PHASES, "other"):
        parts[p] = med(h["phases"][p] for h in h_runs)
    return {
        "study": study, "epochs": epochs, "runs": n, "ratios": ratios,
        "ratio": med(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "harness_s": med(h["wall_s"] for h in h_runs), "plain_s": med(p["wall_s"] for p in p_runs),
        "plain_train_s": med(p["run_walls_s"] for p in p_runs),
        "harness_acc": statistics.mean(h["val_acc"] for h in h_runs),
        "plain_acc": statistics.mean(p["val_acc"] for p in p_runs),
        "complete": all(h["complete"] for h in h_runs), "threads": h_runs[0]["threads"],
        "parts": parts,
    }
