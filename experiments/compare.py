"""Turn a sweep on disk into runs.csv, a ranked summary, plots and one self-contained report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from experiments.analysis.analyse import UsageError, analyse
from experiments.analysis.draw import draw
from experiments.analysis.load import RECORD, RunSet, load_runs
from experiments.analysis.outdir import OutDirTaken, default_out, finish, prepare, remove_stale
from experiments.analysis.watch import watch
from experiments.analysis.write import write
from experiments.record import CONFIG, METRICS, SUMMARY

EXAMPLES = """examples:
  python experiments/compare.py                       # newest sweep under outputs/sweeps
  python experiments/compare.py outputs/sweeps/2026-01-01_12-00-00
  python experiments/compare.py outputs/sweeps/a outputs/sweeps/b --out /tmp/ab
  python experiments/compare.py --metric val_loss     # rank by final val_loss (lower wins)
  python experiments/compare.py --by init --facet depth
  python experiments/compare.py --metric test_acc    # rank by the summary's test accuracy
  python experiments/compare.py --filter "depth >= 8 and batchnorm == true"
  python experiments/compare.py --filter "optim.lr < 0.1 and activation == 'relu'"
  python experiments/compare.py --watch               # live: re-render every 10 s until the sweep ends

exit status: 0 done, 2 no runs found / filter matched nothing / bad option value /
output dir holds another comparison (see --force)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="compare.py", description=__doc__ + " Runs are found by their run record "
        f"({SUMMARY}, {CONFIG} or {METRICS}), so a run that failed before its first epoch is "
        "counted; the statistical rules are in docs/compare.md.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="sweep dirs, run dirs or any parents of them, searched recursively "
                        "(default: the newest sweep under outputs/sweeps, else outputs/runs)")
    p.add_argument("--metric", help="metric to rank and plot by: a metrics.csv column (e.g. "
                   "val_loss) or a final-only metric of summary.json (test_acc, test_loss, ...); "
                   "default: val_acc for classification, val_mse for regression; acc and r2 "
                   "are higher-is-better, everything else lower-is-better")
    p.add_argument("--by", help="config key for the line colors of the plots, e.g. --by init "
                   "(default: the factor with the largest effect on the metric)")
    p.add_argument("--facet", help="config key with one panel per level, e.g. --facet depth "
                   "(default: the factor with the second-largest effect; 'none' for no panels)")
    p.add_argument("--filter", help="pandas query on config columns choosing the runs, e.g. "
                   "\"depth >= 8 and batchnorm\" or \"optim.lr < 0.1\" (dotted keys work as is)")
    p.add_argument("--out", type=Path, help="output dir (default: <sweep>/compare/, or "
                   "<sweep>/compare-<filter>/ with --filter); a folder holding the comparison of "
                   "another set of runs is refused unless --force")
    p.add_argument("--force", action="store_true", help="replace a comparison of another set "
                   "of runs in the output dir (its files are removed first)")
    p.add_argument("--watch", nargs="?", type=float, const=10.0, metavar="SECONDS",
                   help="re-render every SECONDS (default 10) while the sweep runs, running "
                        "runs' partial curves included; report.html reloads itself; stops when "
                        "every run has ended")
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


def compare(paths: list[Path], out: Path | None = None, metric: str | None = None,
            by: str | None = None, facet: str | None = None, query: str | None = None,
            rs: RunSet | None = None, force: bool = False,
            decorate: Callable[[str], str] | None = None) -> dict:
    """Load, analyse, draw, write; returns the files written, the verdict and seconds per step.
    `decorate` edits report.html before it is written (--watch: the reload tag). The previous
    comparison's files are replaced in place, and those not written again removed at the end."""
    t0 = time.perf_counter()
    rs = rs or load_runs(paths)
    if rs.runs.empty:
        raise UsageError(f"no runs found under {', '.join(map(str, paths))} (looked for "
                         f"{', '.join(RECORD)})")
    t_load = time.perf_counter()
    a = analyse(rs, metric, by, facet, query)
    t_analyse = time.perf_counter()
    out = out or default_out(paths, query)
    run_dirs = [str(Path(d).resolve()) for d in a.runs["run_dir"]]
    try:
        stale = prepare(out, run_dirs, force)
    except OutDirTaken as e:
        raise UsageError(str(e)) from e
    images = draw(a, out)
    t_draw = time.perf_counter()
    files = write(a, images, out, ", ".join(map(str, paths)), decorate)
    finish(out, run_dirs, [*files, *images], {"metric": a.metric, "by": a.by,
                                              "facet": a.facet, "filter": query})
    remove_stale(stale, [*files, *images])
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
        out = args.out or default_out(paths, args.filter)
        renders = []

        def render(decorate: Callable[[str], str] | None = None) -> dict:
            # watching: the folder is this sweep's own, its set of runs grows as jobs start
            force = args.force or bool(renders) or args.out is None
            renders.append(1)
            return compare(paths, out, args.metric, args.by, args.facet, args.filter,
                           force=force if args.watch is not None else args.force,
                           decorate=decorate)

        if args.watch is not None:
            if not args.watch > 0:
                raise UsageError(f"--watch {args.watch:g}: give a number of seconds > 0")
            print(f"compare.py: watching {', '.join(map(str, paths))}; open {out / 'report.html'}")
            try:
                res = watch(render, paths, args.watch, no_runs=UsageError)
            except KeyboardInterrupt:
                print("compare.py: stopped watching (the sweep goes on)")
                return 0
            if res is None:
                raise UsageError(f"no runs found under {', '.join(map(str, paths))}")
        else:
            res = render()
    except UsageError as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    s = res["seconds"]
    plural = "s" if res["n_runs"] != 1 else ""
    lines = f"lines by {res['by']}" if res["by"] else "one line"
    panels = f"panels by {res['facet']}" if res["facet"] else "one panel"
    print(f"{res['n_runs']} run{plural}; factors: {', '.join(res['factors']) or 'none'}; "
          f"{lines}, {panels}; metric {res['metric']}")
    print(res["verdict"])
    print(f"wrote {len(res['files'])} files to {res['out']} "
          f"(load {s['load']:.1f}s, analyse {s['analyse']:.1f}s, draw {s['draw']:.1f}s, "
          f"write {s['write']:.1f}s): {', '.join(res['files'])}")
    print(f"open {res['out'] / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
