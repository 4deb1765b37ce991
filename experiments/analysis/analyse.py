"""The analyse step of compare: a RunSet in, every table and verdict out, no files written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.analysis import aggregate as agg
from experiments.analysis import groups, report, stats, verdict
from experiments.analysis.load import META_COLUMNS, RunSet
from experiments.record import higher_is_better, metric_for_columns


class UsageError(Exception):
    """A problem with what the user asked for: one line on stderr, exit status 2."""


@dataclass
class Analysis:
    """What compare found: the runs, their tables, the grouping, the verdict."""

    rs: RunSet                      # every run found (metrics, layers in long form)
    runs: pd.DataFrame              # the runs chosen by --filter: one row per run, config keys
    fx: agg.Factors                 # factors, aliases, seed key
    table: pd.DataFrame             # runs.csv: one row per run, final_/best_ values
    metric: str                     # what ranks the runs, e.g. val_acc
    hib: bool                       # higher is better
    by: str | None                  # config key of the line colors (None: one color)
    facet: str | None               # config key of the panels (None: one panel)
    groups: pd.DataFrame            # groups.csv: one row per configuration, ranked
    by_factor: dict[str, pd.DataFrame]  # factor -> one row per level, ranked
    long: pd.DataFrame              # run x epoch rows with status and config columns
    warnings: list[str] = field(default_factory=list)
    worst: float = math.nan         # what a diverged or failed run counts as
    resolution: float = 0.0         # differences below this are ties
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)  # anova(): term, eta2, p
    confounded: list[tuple[str, str]] = field(default_factory=list)  # factor pairs not crossed
    verdict: str = ""

    @property
    def value(self) -> str:
        """The runs.csv column every statistic uses: outcome_<metric> (the outcome rule)."""
        return f"outcome_{self.metric}"

    @property
    def final(self) -> str:
        """The runs.csv column of each run's last logged value: final_<metric>."""
        return f"final_{self.metric}"


def choose_key(name: str, value: str | None, runs: pd.DataFrame, varying: list[str],
               fallback: list[str]) -> str | None:
    """The --by/--facet key: the user's (checked), 'none', or the first of fallback."""
    if value is not None and value.lower() == "none":
        return None
    if value is None:
        return fallback[0] if fallback else None
    if value not in runs.columns or value in META_COLUMNS:
        raise UsageError(f"--{name} {value!r} is not a config key; keys that vary: "
                         + (", ".join(varying) or "none"))
    if value not in varying:
        raise UsageError(f"--{name} {value!r} has one value in every run; keys that vary: "
                         + (", ".join(varying) or "none"))
    return value


def _initial(rs: RunSet, runs: pd.DataFrame, metric: str) -> pd.Series:
    """Every run's value of metric at initialization (epoch 0); for a final-only metric
    (test_acc) the epoch-0 value of its validation twin (val_acc)."""
    col = metric if metric in rs.metrics else metric.replace("test_", "val_", 1)
    m = rs.metrics
    if col not in m or not len(m):
        return pd.Series(dtype=float)
    return m.loc[(m["epoch"] == 0) & m["run_id"].isin(runs.index), col]


def metric_choices(rs: RunSet) -> list[str]:
    """Metrics compare can rank by: metrics.csv columns and the summary's final-only ones."""
    cols = [c for c in rs.metrics.columns if c not in agg.NOT_A_METRIC]
    return cols + [c for c in rs.finals.columns if c not in cols]


def analyse(rs: RunSet, metric: str | None = None, by: str | None = None,
            facet: str | None = None, query: str | None = None) -> Analysis:
    """Filter the runs, pick the metric and the grouping, compute every table and the verdict."""
    if rs.runs.empty:
        raise UsageError("no runs found")
    try:
        runs = agg.apply_filter(rs.runs, query)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if runs.empty:
        raise UsageError(f"--filter {query!r} matched none of the {len(rs.runs)} runs"
                         + agg.filter_hint(rs.runs, query))
    warnings = list(rs.warnings)
    fx = agg.detect_factors(rs, runs)
    table = agg.run_table(rs, runs, fx)
    try:
        metric = metric or metric_for_columns(rs.metrics.columns)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if metric not in metric_choices(rs):
        raise UsageError(f"--metric {metric!r} is not a metrics.csv column or a final "
                         f"metric of summary.json; choose from: {', '.join(metric_choices(rs))}")
    hib = higher_is_better(metric)
    final, value = f"final_{metric}", f"outcome_{metric}"
    lacking = int((table["status"].eq("completed") & table[final].isna()).sum())
    if lacking:
        warnings.append(f"{lacking} completed runs have no {metric} (another task?); "
                        "they are left out: choose them with --filter and --metric")
    done = table["status"].eq("completed")
    worst = stats.penalty(table.loc[done, final], _initial(rs, runs, metric), hib)
    table[value] = stats.outcomes(table["status"], table[final], table["epochs"], worst)
    table["counted_as"] = stats.counted_as(table["status"], table[value])
    seen = [table[final].to_numpy(dtype=float)]
    if metric in rs.metrics:
        seen.append(rs.metrics.loc[rs.metrics["run_id"].isin(runs.index), metric].to_numpy())
    res = stats.resolution(np.concatenate(seen), metric)
    cells = groups.cell_table(table, fx.factors, fx.seed, hib, res, value, final)
    by_factor = {f: groups.level_table(table, cells, f, fx.factors, fx.seed, hib, res, value,
                                       final) for f in fx.factors}
    confounded = stats.confounded_pairs(runs, fx.factors)
    mixed = {f for pair in confounded for f in pair}
    crossed = [f for f in fx.factors if f not in mixed]
    importance = stats.anova(cells, crossed, *stats.within(table, fx.factors, value))
    mains = importance[importance["factors"].map(len) == 1].sort_values("eta2", ascending=False)
    order = [t[0] for t in mains["factors"]] + [f for f in fx.factors if f in mixed]
    by = choose_key("by", by, runs, fx.varying, order)
    facet = choose_key("facet", facet, runs, fx.varying, [f for f in order if f != by])
    if facet == by:
        facet = None
    keys = [k for k in dict.fromkeys([*fx.factors, by, facet]) if k]
    long = agg.tidy(rs, runs, keys)
    a = Analysis(rs=rs, runs=runs, fx=fx, table=table, metric=metric, hib=hib, by=by,
                 facet=facet, groups=cells, by_factor=by_factor, long=long, warnings=warnings,
                 worst=worst, resolution=res, importance=importance, confounded=confounded)
    hint = report.signal_hint(agg.layer_profile(rs, runs, [by] if by else [], "init"), by)
    a.verdict = verdict.verdict(a, hint)
    return a
