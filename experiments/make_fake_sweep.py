"""Write a synthetic sweep tree (run.py's layout) and, with --bench, time compare.py on it."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__:
    from .analysis.fake import make_fake_sweep
else:  # run as a script: experiments/ is on sys.path
    from analysis.fake import make_fake_sweep


def bench_compare(n_runs: int = 1000, n_epochs: int = 50, seed: int = 0,
                  root: Path | None = None) -> dict[str, float]:
    """Seconds to generate, load + aggregate, plot and write compare.py's outputs for a fake
    sweep of n_runs x n_epochs (activation x init x depth up to 32 layers, ~3% bad runs)."""
    if __package__:
        from .compare import compare
    else:
        from compare import compare
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(root or tmp) / "sweep"
        t0 = time.perf_counter()
        make_fake_sweep(root, n_runs, n_epochs, seed)
        made = time.perf_counter() - t0
        s = compare([root], root / "compare")["seconds"]
    return {"generate": made, "load_aggregate": s["load"] + s["aggregate"],
            "plot_write": s["plot"] + s["write"], "total": s["total"]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, epilog="example: python "
                                "experiments/make_fake_sweep.py --bench --runs 1000 --epochs 50")
    p.add_argument("root", nargs="?", type=Path, help="where to write (default: a temp dir, "
                   "removed after --bench)")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench", action="store_true", help="time compare.py on the tree")
    args = p.parse_args(argv)
    if args.bench:
        s = bench_compare(args.runs, args.epochs, args.seed, args.root)
        print(f"compare.py on {args.runs} runs x {args.epochs} epochs: load+aggregate "
              f"{s['load_aggregate']:.2f} s, plot+write {s['plot_write']:.2f} s, total "
              f"{s['total']:.2f} s (tree generated in {s['generate']:.1f} s)")
        return 0
    if args.root is None:
        p.error("give ROOT, or --bench")
    make_fake_sweep(args.root, args.runs, args.epochs, args.seed)
    print(f"wrote {args.runs} runs x {args.epochs} epochs under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
