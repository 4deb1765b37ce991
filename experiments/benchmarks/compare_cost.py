"""What compare.py costs on a generated sweep tree (load + aggregate, plots + report)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from experiments.benchmarks.fake_sweep import make_fake_sweep
from experiments.compare import compare


def bench_compare(n_runs: int = 1000, n_epochs: int = 50, seed: int = 0,
                  root: Path | None = None) -> dict[str, float]:
    """Seconds to generate, load + aggregate, plot and write compare.py's outputs for a fake
    sweep of n_runs x n_epochs (activation x init x depth up to 32 layers, ~3% bad runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(root or tmp) / "sweep"
        t0 = time.perf_counter()
        make_fake_sweep(root, n_runs, n_epochs, seed)
        made = time.perf_counter() - t0
        s = compare([root], root / "compare")["seconds"]
    return {"generate": made, "load_aggregate": s["load"] + s["analyse"],
            "plot_write": s["draw"] + s["write"], "total": s["total"]}
