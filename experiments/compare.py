"""Turn a sweep on disk into runs.csv, a ranked summary, plots and one self-contained report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.analysis.analyse import UsageError, analyse
from experiments.analysis.draw import draw
from experiments.analysis.load import RunSet, load_runs
from experiments.analysis.write import write
from experiments.record import CONFIG, METRICS

EXAMPLES = """examples:
  python experiments/compare.py                       # newest sweep under outputs/sweeps
  python experiments/compare.py outputs/sweeps/2026-01-01_12-00-00
  python experiments/compare.py outputs/sweeps/a outputs/sweeps/b --out /tmp/ab
  python experiments/compare.py --metric val_loss     # rank by final val_loss (lower wins)
  python experiments/compare.py --by init --facet depth
  python experiments/compare.py --filter "depth >= 8 and batchnorm"
  python experiments/compare.py --filter "optim.lr < 0.1 and activation == 'relu'"

exit status: 0 done, 2 no runs found / filter matched nothing / bad option value."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="compare.py", description=__doc__ + f" Runs are found by **/{METRICS}; "
        f"each run's config is read from the {CONFIG} the harness wrote beside it.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="sweep dirs, run dirs or any parents of them, searched recursively "
                        "(default: the newest sweep under outputs/sweeps, else outputs/runs)")
    p.add_argument("--metric", help="metrics.csv column to rank and plot by, e.g. val_loss "
                   "(default: val_acc for classification, val_mse for regression); acc and r2 "
                   "are higher-is-better, everything else lower-is-better")
    p.add_argument("--by", help="config key for the line colors of the plots, e.g. --by init "
                   "(default: the factor with the largest effect on the metric)")
    p.add_argument("--facet", help="config key with one panel per level, e.g. --facet depth "
                   "(default: the factor with the second-largest effect; 'none' for no panels)")
    p.add_argument("--filter", help="pandas query on config columns choosing the runs, e.g. "
                   "\"depth >= 8 and batchnorm\" or \"optim.lr < 0.1\" (dotted keys work as is)")
    p.add_argument("--out", type=Path, help="output dir (default: <sweep>/compare/)")
    return p.parse_args(argv)


def newest_sweep(outputs: Path) -> tuple[list[Path], str]:
    """The sweep (dir of the newest multirun.yaml, else newest child) or all single runs."""
    sweeps = outputs / "sweeps"
    if sweeps.is_dir():
        marks = [m.parent for m in sweeps.rglob("multirun.yaml")]
        dirs = marks or [d for d in sweeps.iterdir() if d.is_dir()]
        if dirs:
            newest = max(dirs, key=lambda d: (d / "multirun.yaml").stat().st_mtime
                         if (d / "multirun.yaml").exists() else d.stat().st_mtime)
            return [newest], f"newest sweep: {newest}"
    runs = outputs / "runs"
    if runs.is_dir():
        return [runs], f"no sweep under {sweeps}; comparing every run under {runs}"
    raise UsageError(f"no runs found: neither {sweeps} nor {runs} exists "
                     "(pass a sweep dir as PATH)")


def default_out(paths: list[Path]) -> Path:
    """<sweep>/compare for one path; the deepest common parent's compare/ for several."""
    dirs = [p.parent if p.is_file() else p for p in (q.resolve() for q in paths)]
    common = dirs[0]
    for d in dirs[1:]:
        while common not in (d, *d.parents):
            common = common.parent
    return common / "compare"


def compare(paths: list[Path], out: Path, metric: str | None = None, by: str | None = None,
            facet: str | None = None, query: str | None = None,
            rs: RunSet | None = None) -> dict:
    """Load, analyse, draw, write; returns the files written, the verdict and seconds per step."""
    t0 = time.perf_counter()
    rs = rs or load_runs(paths)
    if rs.runs.empty:
        raise UsageError(f"no runs found under {', '.join(map(str, paths))} "
                         "(looked for **/metrics.csv)")
    t_load = time.perf_counter()
    a = analyse(rs, metric, by, facet, query)
    t_analyse = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    images = draw(a, out)
    t_draw = time.perf_counter()
    files = write(a, images, out, ", ".join(map(str, paths)))
    t_end = time.perf_counter()
    return {"out": out, "files": [p.name for p in [*files, *images]], "verdict": a.verdict,
            "warnings": a.warnings, "n_runs": len(a.runs), "factors": a.fx.factors,
            "by": a.by, "facet": a.facet, "metric": a.metric, "analysis": a,
            "seconds": {"load": t_load - t0, "analyse": t_analyse - t_load,
                        "draw": t_draw - t_analyse, "write": t_end - t_draw,
                        "total": t_end - t0}}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = list(args.paths)
        if not paths:
            paths, note = newest_sweep(Path("outputs"))
            print(f"compare.py: {note}")
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise UsageError(f"no such file or directory: {', '.join(map(str, missing))}")
        res = compare(paths, args.out or default_out(paths), args.metric, args.by, args.facet,
                      args.filter)
    except UsageError as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    s = res["seconds"]
    plural = "s" if res["n_runs"] != 1 else ""
    print(f"{res['n_runs']} run{plural}; factors: {', '.join(res['factors']) or 'none'}; "
          f"lines by {res['by']}, panels by {res['facet']}; metric {res['metric']}")
    print(res["verdict"])
    print(f"wrote {len(res['files'])} files to {res['out']} "
          f"(load {s['load']:.1f}s, analyse {s['analyse']:.1f}s, draw {s['draw']:.1f}s, "
          f"write {s['write']:.1f}s): {', '.join(res['files'])}")
    print(f"open {res['out'] / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
