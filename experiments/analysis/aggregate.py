"""Factors, per-run final/best values and seed aggregates (mean, std, 95% CI, n) of a RunSet."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.analysis import stats
from experiments.analysis.load import RunSet
from experiments.record import LABELS, higher_is_better

_PATHLIKE = re.compile(r"(^|[._])(path|dir|file|root|cwd|output|out_dir)s?($|[._])")
NOT_A_METRIC = ("run_id", "epoch", "step")  # counters: no final_/best_ column
NO_BEST = ("lr",)                              # a schedule, not a result: final_lr only


def query_expr(expr: str, columns: list[str] | pd.Index) -> str:
    """Backtick dotted config names so pandas.query accepts "optim.lr < 0.1"; booleans as
    users type them (true, false, 'true') become True and False."""
    for c in sorted((c for c in columns if "." in c), key=len, reverse=True):
        expr = re.sub(rf"(?<![\w`.]){re.escape(c)}(?![\w`])", f"`{c}`", expr)
    expr = re.sub(r"""(['"])(true|false)\1""", lambda m: m.group(2).capitalize(), expr,
                  flags=re.IGNORECASE)
    return re.sub(r"(?<![\w`'\".])(true|false)(?![\w`'\"])",
                  lambda m: m.group(1).capitalize(), expr)


def filter_hint(runs: pd.DataFrame, expr: str | None) -> str:
    """A hint for a filter that matched nothing: the values of the config keys it names."""
    named = [c for c in runs.columns if c not in ("run_dir", "error") and expr
             and re.search(rf"(?<![\w.]){re.escape(c)}(?![\w])", expr)]
    vals = [f"{c} takes {', '.join(map(repr, pd.unique(runs[c])[:8]))}" for c in named]
    return f" ({'; '.join(vals)})" if vals else ""


def apply_filter(runs: pd.DataFrame, expr: str | None) -> pd.DataFrame:
    """Rows of runs matching a pandas query on config columns (ValueError if it is invalid)."""
    if not expr:
        return runs
    try:
        return runs.query(query_expr(expr, runs.columns))
    except Exception as e:  # pandas raises many kinds: UndefinedVariableError, SyntaxError...
        raise ValueError(f"--filter {expr!r} is not a valid pandas query on config columns "
                         f"({type(e).__name__}: {e})") from e


@dataclass
class Factors:
    """The grouping axes of a sweep."""

    factors: list[str]                  # config keys that vary, in priority order (seed excluded)
    varying: list[str]                  # every varying config key (factors + aliases), for runs.csv
    aliases: dict[str, str] = field(default_factory=dict)  # key -> factor it merely follows
    seed: str | None = "seed"


def _priority(config_keys: list[str], swept: list[str]) -> list[str]:
    """Keys typed on the command line first (group "data" -> data.name), then config order."""
    first = []
    for k in swept:
        key = k if k in config_keys else f"{k}.name" if f"{k}.name" in config_keys else None
        if key and key not in first:
            first.append(key)
    return first + [k for k in config_keys if k not in first]


def detect_factors(rs: RunSet, runs: pd.DataFrame | None = None) -> Factors:
    """Config keys that vary across runs. Seeds are the replicate axis; path-like keys are
    bookkeeping unless swept; a key whose levels map one-to-one onto an earlier factor's
    (optim.momentum following optim=sgd,adam) is an alias, listed but not a factor."""
    runs = rs.runs if runs is None else runs
    runs = runs[runs["config_ok"]] if "config_ok" in runs else runs
    seed = "seed" if "seed" in runs else None
    factors: list[str] = []
    varying: list[str] = []
    aliases: dict[str, str] = {}
    codes: dict[str, np.ndarray] = {}
    for key in _priority(rs.config_keys, rs.swept_keys):
        if key not in runs or key.split(".")[-1].endswith("seed") or key.split(".")[0] in LABELS:
            continue
        c, uniques = pd.factorize(runs[key], use_na_sentinel=False)
        if len(uniques) < 2:
            continue
        varying.append(key)
        if _PATHLIKE.search(key) and key not in rs.swept_keys:
            continue
        for f in factors:
            pairs = len(np.unique(c * (codes[f].max() + 1) + codes[f]))
            if pairs == len(uniques) == codes[f].max() + 1:
                aliases[key] = f
                break
        else:
            factors.append(key)
            codes[key] = c
    return Factors(factors=factors, varying=varying, aliases=aliases, seed=seed)


def run_table(rs: RunSet, runs: pd.DataFrame, fx: Factors) -> pd.DataFrame:
    """runs.csv: run_dir, status, varying keys, seed, final_/best_<m> per metric, epochs,
    wall_time_s. best = max for acc/r2/samples_per_s, min otherwise (see higher_is_better)."""
    m = rs.metrics[rs.metrics["run_id"].isin(runs.index)]
    cols = [c for c in m.columns if c not in NOT_A_METRIC]
    g = m.groupby("run_id", sort=True)
    last = g.tail(1).set_index("run_id")
    hi = [c for c in cols if higher_is_better(c) and c not in NO_BEST]
    lo = [c for c in cols if not higher_is_better(c) and c not in NO_BEST]
    best = pd.concat([g[hi].max(), g[lo].min()], axis=1)
    parts = {}
    for c in cols:
        parts[f"final_{c}"] = last[c]
        if c not in NO_BEST:
            parts[f"best_{c}"] = best[c]
    keys = fx.varying + ([fx.seed] if fx.seed and fx.seed not in fx.varying else [])
    labels = [c for c in runs.columns if c.split(".")[0] in LABELS and runs[c].notna().any()
              and runs[c].astype(str).ne("").any()]  # notes, tags, name: shown when given
    table = runs[["run_dir", "status", *keys, *labels]].join(pd.DataFrame(parts))
    for c in rs.finals.columns:  # test_acc, ...: once, at the end, in summary.json
        table[f"final_{c}"] = rs.finals[c].reindex(runs.index)
    table["epochs"] = last["epoch"].reindex(runs.index).astype("Int64")
    table["wall_time_s"] = runs["wall_time_s"]
    return table


def tidy(rs: RunSet, runs: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The run x epoch frame: metrics.csv rows with status and config columns attached."""
    cols = ["status", *(c for c in (columns or runs.columns) if c != "status")]
    m = rs.metrics[rs.metrics["run_id"].isin(runs.index)]
    return m.join(runs[cols], on="run_id")


def curve_bands(long: pd.DataFrame, line_keys: list[str], cell_keys: list[str], col: str,
                n_boot: int = 1000) -> pd.DataFrame:
    """Per line (line_keys) and epoch, over completed runs: mean = the average of the line's
    cell means (cell_keys: one configuration), lo/hi = a 95% percentile bootstrap resampling
    seeds within each cell (nan unless every cell has MIN_N runs at that epoch), n = runs."""
    cols = [*line_keys, "epoch", "mean", "lo", "hi", "n"]
    done = long[long["status"].eq("completed") & long[col].notna()]
    if done.empty:
        return pd.DataFrame(columns=cols)
    wide = done.pivot(index="run_id", columns="epoch", values=col)       # runs x epochs
    x_all = wide.to_numpy(dtype=float)
    epochs = wide.columns.to_numpy()
    keys = list(dict.fromkeys([*line_keys, *cell_keys]))
    meta = done.drop_duplicates("run_id").set_index("run_id").loc[wide.index]
    line_id = meta.groupby(line_keys, dropna=False, sort=False).ngroup().to_numpy() \
        if line_keys else np.zeros(len(meta), dtype=int)
    cell_id = meta.groupby(keys, dropna=False, sort=False).ngroup().to_numpy() \
        if keys else np.zeros(len(meta), dtype=int)
    rng = np.random.default_rng(stats.RNG_SEED)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch a cell never reached
        for line in np.unique(line_id):
            mean, boot, n = [], [], []
            for cell in np.unique(cell_id[line_id == line]):
                x = x_all[cell_id == cell]                                   # (runs, epochs)
                n.append(np.isfinite(x).sum(axis=0))
                mean.append(np.nanmean(x, axis=0))
                boot.append(np.nanmean(x[rng.integers(0, len(x), (n_boot, len(x)))], axis=1))
            lo, hi = np.nanquantile(np.nanmean(boot, axis=0), [0.025, 0.975], axis=0)
            enough = (np.asarray(n) >= stats.MIN_N).all(axis=0)
            first = meta.iloc[int(np.argmax(line_id == line))]
            rows.append(pd.DataFrame({**{k: first[k] for k in line_keys}, "epoch": epochs,
                                      "mean": np.nanmean(mean, axis=0),
                                      "lo": np.where(enough, lo, np.nan),
                                      "hi": np.where(enough, hi, np.nan),
                                      "n": np.sum(n, axis=0)}))
    return pd.concat(rows, ignore_index=True)[cols]


def layer_profile(rs: RunSet, runs: pd.DataFrame, keys: list[str], when: str) -> pd.DataFrame:
    """Median act_std and grad_norm per (keys..., layer), at init (epoch 0, every run) or at
    the end (each completed run's last logged epoch)."""
    lay = rs.layers[rs.layers["run_id"].isin(runs.index)]
    if not len(lay):
        return pd.DataFrame(columns=[*keys, "layer", "act_std", "grad_norm", "n"])
    if when == "init":
        lay = lay[lay["epoch"] == 0]
    else:
        done = runs.index[runs["status"] == "completed"]
        lay = lay[lay["run_id"].isin(done)]
        lay = lay[lay["epoch"] == lay.groupby("run_id")["epoch"].transform("max")]
    lay = lay.join(runs[keys], on="run_id") if keys else lay
    g = lay.groupby([*keys, "layer"], dropna=False)
    out = g[["act_std", "grad_norm"]].median()
    out["n"] = g["run_id"].nunique()
    return out.reset_index()


LAYER_TRACES = ("dead_or_saturated_frac", "act_mean")


def layer_curves(rs: RunSet, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean dead_or_saturated_frac and act_mean per (keys..., layer, epoch) over completed runs,
    hidden layers only (the output layer, each run's last, has no saturation); n = runs."""
    cols = [*keys, "layer", "epoch", *LAYER_TRACES, "n"]
    lay = rs.layers
    if not len(lay) or not set(LAYER_TRACES) <= set(lay.columns):
        return pd.DataFrame(columns=cols)
    done = runs.index[runs["status"] == "completed"]
    lay = lay[lay["run_id"].isin(done)]
    lay = lay[lay["layer"] < lay.groupby("run_id")["layer"].transform("max")]
    if not len(lay):
        return pd.DataFrame(columns=cols)
    lay = lay.drop_duplicates(["run_id", "epoch", "layer"], keep="last")  # a resumed run
    lay = lay.join(runs[keys], on="run_id") if keys else lay
    g = lay.groupby([*keys, "layer", "epoch"], dropna=False, sort=True)
    out = g[list(LAYER_TRACES)].mean()
    out["n"] = g.size()
    return out.reset_index()[cols]
