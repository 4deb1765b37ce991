"""The analyse step of compare: a RunSet in, every table and verdict out, no files written."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from experiments.analysis import aggregate as agg
from experiments.analysis import report
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
    verdict: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def value(self) -> str:
        """The runs.csv column holding each run's result: final_<metric>."""
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
        raise UsageError(f"--filter {query!r} matched none of the {len(rs.runs)} runs")
    warnings = list(rs.warnings)
    fx = agg.detect_factors(rs, runs)
    table = agg.run_table(rs, runs, fx)
    metric = metric or metric_for_columns(rs.metrics.columns)
    if metric not in rs.metrics.columns or metric in agg.NOT_A_METRIC:
        raise UsageError(f"--metric {metric!r} is not a metrics.csv column; choose from: "
                         + ", ".join(c for c in rs.metrics.columns if c not in agg.NOT_A_METRIC))
    hib = higher_is_better(metric)
    value = f"final_{metric}"
    lacking = int((table["status"].eq("completed") & table[value].isna()).sum())
    if lacking:
        warnings.append(f"{lacking} completed runs have no {metric} (another task?); "
                        "they are left out: choose them with --filter and --metric")
    effects = list(agg.factor_effects(table, fx.factors, value))
    by = choose_key("by", by, runs, fx.varying, effects)
    facet = choose_key("facet", facet, runs, fx.varying, [f for f in effects if f != by])
    if facet == by:
        facet = None
    groups = agg.group_stats(table, fx.factors, value, hib, fx.seed)
    by_factor = {f: agg.group_stats(table, [f], value, hib, fx.seed) for f in fx.factors}
    keys = [k for k in dict.fromkeys([by, facet]) if k]
    long = agg.tidy(rs, runs, keys)
    a = Analysis(rs=rs, runs=runs, fx=fx, table=table, metric=metric, hib=hib, by=by,
                 facet=facet, groups=groups, by_factor=by_factor, long=long, warnings=warnings)
    why = report.signal_hint(agg.layer_profile(rs, runs, [by] if by else [], "init"), by)
    a.verdict = report.verdict(groups, fx.factors, by_factor, metric, hib, why)
    return a
