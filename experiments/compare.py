"""Turn a sweep on disk into runs.csv, a ranked summary, plots and one self-contained report."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.analysis import aggregate as agg
from experiments.analysis import plots, report, style
from experiments.analysis.load import META_COLUMNS, RunSet, load_runs

EXAMPLES = """examples:
  python experiments/compare.py                       # newest sweep under outputs/sweeps
  python experiments/compare.py outputs/sweeps/2026-01-01_12-00-00
  python experiments/compare.py outputs/sweeps/a outputs/sweeps/b --out /tmp/ab
  python experiments/compare.py --metric val_loss     # rank by final val_loss (lower wins)
  python experiments/compare.py --by init --facet depth
  python experiments/compare.py --filter "depth >= 8 and batchnorm"
  python experiments/compare.py --filter "optim.lr < 0.1 and activation == 'relu'"

exit status: 0 done, 2 no runs found / filter matched nothing / bad option value."""


class UsageError(Exception):
    """A problem with what the user asked for: one line on stderr, exit status 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="compare.py", description=__doc__ + " Runs are found by **/metrics.csv; "
        "each run's config is read from the .hydra/config.yaml beside it.",
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


def _choose(name: str, value: str | None, runs: pd.DataFrame,
            fallback: list[str]) -> str | None:
    if value is not None and value.lower() == "none":
        return None
    if value is not None:
        if value not in runs.columns or value in META_COLUMNS:
            keys = [c for c in runs.columns if c not in META_COLUMNS and not c.startswith("_")]
            raise UsageError(f"--{name} {value!r} is not a config key; choose from: "
                             + ", ".join(keys))
        return value
    return fallback[0] if fallback else None


def compare(paths: list[Path], out: Path, metric: str | None = None, by: str | None = None,
            facet: str | None = None, query: str | None = None,
            rs: RunSet | None = None) -> dict:
    """The whole pipeline; returns written paths, warnings and seconds per phase."""
    t0 = time.perf_counter()
    rs = rs or load_runs(paths)
    if rs.runs.empty:
        raise UsageError(f"no runs found under {', '.join(map(str, paths))} "
                         "(looked for **/metrics.csv)")
    try:
        runs = agg.apply_filter(rs.runs, query)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if runs.empty:
        raise UsageError(f"--filter {query!r} matched none of the {len(rs.runs)} runs")
    t_load = time.perf_counter()
    fx = agg.detect_factors(rs, runs)
    table = agg.run_table(rs, runs, fx)
    metric = metric or agg.default_metric(rs.metrics.columns)
    if metric not in rs.metrics.columns or metric in agg.NOT_A_METRIC:
        raise UsageError(f"--metric {metric!r} is not a metrics.csv column; choose from: "
                         + ", ".join(c for c in rs.metrics.columns if c not in agg.NOT_A_METRIC))
    hib = agg.higher_is_better(metric)
    value = f"final_{metric}"
    lacking = int((table["status"].eq("completed") & table[value].isna()).sum())
    if lacking:
        rs.warnings.append(f"{lacking} completed runs have no {metric} (another task?); "
                           "they are left out: choose them with --filter and --metric")
    effects = list(agg.factor_effects(table, fx.factors, value))
    by = _choose("by", by, runs, effects)
    facet = _choose("facet", facet, runs, [f for f in effects if f != by])
    if facet == by:
        facet = None
    runs = runs.copy()
    runs["_by"] = runs[by].map(style.fmt) if by else "all runs"
    runs["_facet"] = runs[facet].map(style.fmt) if facet else "all"
    table[["_by", "_facet"]] = runs[["_by", "_facet"]]
    groups = agg.group_stats(table, fx.factors, value, hib, fx.seed)
    by_factor = {f: agg.group_stats(table, [f], value, hib, fx.seed) for f in fx.factors}
    long = agg.tidy(rs, runs, ["_by", "_facet"])
    t_agg = time.perf_counter()

    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys([*fx.factors, *(k for k in (by, facet) if k)]))
    spec = style.PlotSpec(
        metric=metric, hib=hib, by=by, facet=facet, factors=fx.factors, out=out,
        palette={k: style.make_palette(runs[k]) for k in keys},
        levels={k: style.ordered_levels(runs[k]) for k in keys},
        replicates=_replicates(table, fx, by, facet), seeds=_seeds(table, fx))
    loss = [c for c in ("val_loss", "train_loss") if c in long]
    twin = metric.replace("val_", "train_", 1)
    plots.curves(spec, long, [metric] + ([twin] if twin != metric and twin in long else []),
                 f"curves_{metric}", metric if twin not in long else f"{metric} / {twin}")
    if loss and metric not in loss:
        plots.curves(spec, long, loss, "curves_loss", " / ".join(loss))
    plots.final_by_factor(spec, table)
    plots.heatmaps(spec, table)
    plots.signal_propagation(spec, rs, runs)
    plots.layers_over_epochs(spec, rs, runs)
    plots.walltime(spec, table)
    t_plot = time.perf_counter()

    csv_table = table.drop(columns=["_by", "_facet"])
    csv_table.to_csv(out / "runs.csv", index=False)
    groups.to_csv(out / "groups.csv", index=False)
    why = report.signal_hint(agg.layer_profile(rs, runs, ["_by"], "init"), by)
    rep = report.Report(
        source=", ".join(map(str, paths)), metric=metric, hib=hib, factors=fx.factors,
        aliases=fx.aliases, groups=groups, by_factor=by_factor, table=csv_table,
        verdict=report.verdict(groups, fx.factors, by_factor, metric, hib, why),
        warnings=rs.warnings, images=spec.written,
        errors={r.run_dir: str(r.error) for r in runs.itertuples()
                if r.status == "failed" and isinstance(r.error, str)})
    report.write_summary_md(rep, out / "summary.md")
    report.write_report_html(rep, out / "report.html")
    t_end = time.perf_counter()
    return {"out": out, "files": ["runs.csv", "groups.csv", "summary.md", "report.html",
                                  *(p.name for p in spec.written)],
            "verdict": rep.verdict, "warnings": rs.warnings, "n_runs": len(runs),
            "factors": fx.factors, "by": by, "facet": facet, "metric": metric,
            "seconds": {"load": t_load - t0, "aggregate": t_agg - t_load,
                        "plot": t_plot - t_agg, "write": t_end - t_plot, "total": t_end - t0}}


def _seeds(table: pd.DataFrame, fx: agg.Factors) -> str:
    """"3 seeds": the seeds among completed runs."""
    done = table[table["status"] == "completed"]
    n_seeds = done[fx.seed].nunique() if fx.seed and fx.seed in done else 1
    return f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"


def _replicates(table: pd.DataFrame, fx: agg.Factors, by: str | None,
                facet: str | None) -> str:
    """"3 seeds, averaged over depth": what one line of a by x facet figure pools."""
    others = [f for f in fx.factors if f not in (by, facet)]
    return _seeds(table, fx) + (f", averaged over {', '.join(others)}" if others else "")


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
          f"(load {s['load']:.1f}s, aggregate {s['aggregate']:.1f}s, plot {s['plot']:.1f}s, "
          f"write {s['write']:.1f}s): {', '.join(res['files'])}")
    print(f"open {res['out'] / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
