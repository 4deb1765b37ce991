"""groups.csv and the per-factor tables: cells (configurations) and factor levels, ranked.

A cell is one configuration; its replicates are its seeds. A factor level averages the means
of its cells, so runs of different cells are never pooled as if they were seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.analysis import stats

STATUS_COUNTS = ("completed", "diverged", "failed", "running")
COLUMNS = ["rank", "mean", "ci_lo", "ci_hi", "min", "max", "std", "n", "n_seeds",
           "mean_completed", "n_runs", "n_completed", "n_diverged", "n_failed", "n_running",
           "n_other", "call", "diff", "p_holm", "test"]


def _counts(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """n_runs and n_<status> per group (every run, whatever its status)."""
    status = table.groupby([*keys, "status"], dropna=False).size().unstack("status", fill_value=0)
    out = pd.DataFrame(index=status.index)
    out["n_runs"] = status.sum(axis=1)
    for s in STATUS_COUNTS:
        out[f"n_{s}"] = status[s] if s in status else 0
    out["n_other"] = out["n_runs"] - out[[f"n_{s}" for s in STATUS_COUNTS]].sum(axis=1)
    return out


def _key(k: object) -> object:
    """A group key as the index holds it: groupby on a one-key list yields 1-tuples."""
    return k[0] if isinstance(k, tuple) and len(k) == 1 else k


def _unpaired(group: object, n: int) -> list[str]:
    """Replicate labels no other group shares: without a seed nothing is paired."""
    return [f"{group!r}#{i}" for i in range(n)]


def _rank(out: pd.DataFrame, hib: bool) -> pd.DataFrame:
    out = out.sort_values("mean", ascending=not hib, na_position="last", kind="stable")
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def _calls(out: pd.DataFrame, values: list[pd.Series], hib: bool, res: float) -> pd.DataFrame:
    """The leader against every other ranked group: call (best, tied, better-than...), the
    difference, Holm-corrected p and the test used."""
    ranked = [i for i in range(len(out)) if pd.notna(out["mean"].iat[i])]
    contrasts, tied = stats.best_set(values, ranked, hib, res)
    out["call"], out["diff"], out["p_holm"], out["test"] = "", math.nan, math.nan, ""
    col = out.columns.get_loc
    if ranked:
        proven = len(tied) == 1 and all(c.call == "better" for c in contrasts)
        out.iat[ranked[0], col("call")] = ("best" if proven else "tied for best"
                                           if len(tied) > 1 else "first (untested)")
    for c in contrasts:
        out.iat[c.other, col("call")] = "tied for best" if c.other in tied else (
            "below (untested)" if c.call == "untested" else "below")
        out.iat[c.other, col("diff")] = c.diff
        out.iat[c.other, col("p_holm")] = c.p_holm
        out.iat[c.other, col("test")] = c.test
    return out


def cell_table(table: pd.DataFrame, factors: list[str], seed: str | None, hib: bool,
               res: float, value: str, final: str) -> pd.DataFrame:
    """One row per configuration: mean of the outcomes over its seeds, the bootstrap 95%
    interval (empty when n < 3), min, max, counts by status, and the call against the leader
    (paired over shared seeds). value: the outcome column; final: the completed runs' final
    value (mean_completed). No factors: one group, "all runs"."""
    keys = factors or ["_all"]
    t = table if factors else table.assign(_all="all runs")
    out = _counts(t, keys)
    g = t.dropna(subset=[value]).groupby(keys, dropna=False)
    out = out.join(g[value].agg(["mean", "min", "max", "std", "count"]).rename(
        columns={"count": "n"}), how="left")
    done = t[t["status"] == "completed"].groupby(keys, dropna=False)
    out["mean_completed"] = done[final].mean()
    out["n_seeds"] = (g[seed].nunique() if seed and seed in t else g[value].count())
    out["n"] = out["n"].fillna(0).astype(int)
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    ci = {_key(k): stats.boot_mean_interval([v.to_numpy()]) for k, v in g[value]}
    out["ci_lo"] = [ci.get(k, (math.nan,) * 2)[0] for k in out.index]
    out["ci_hi"] = [ci.get(k, (math.nan,) * 2)[1] for k in out.index]
    out = _rank(out, hib)
    index_of = {k: i for i, k in enumerate(out.index)}
    values = [pd.Series(dtype=float)] * len(out)
    for k, v in g:
        rep = v[seed] if seed and seed in v else _unpaired(k, len(v))
        values[index_of[_key(k)]] = pd.Series(v[value].to_numpy(), index=pd.Index(rep))
    out = _calls(out, values, hib, res)
    return out[COLUMNS].reset_index()


def level_table(table: pd.DataFrame, cells: pd.DataFrame, factor: str, factors: list[str],
                seed: str | None, hib: bool, res: float, value: str, final: str
                ) -> pd.DataFrame:
    """One row per level of factor: the average of its cell means (n_cells of them), a 95%
    interval from resampling seeds within each cell (empty unless every cell has n >= 3),
    counts by status, and the call against the leading level, paired over matched blocks
    (the same levels of the other factors and the same seed)."""
    others = [f for f in factors if f != factor]
    out = _counts(table, [factor])
    cm = cells.dropna(subset=["mean"]).groupby(factor, dropna=False)
    out = out.join(cm["mean"].agg(["mean", "count"]).rename(columns={"count": "n_cells"}))
    t = table.dropna(subset=[value])
    g = t.groupby(factor, dropna=False)
    out = out.join(g[value].agg(["min", "max", "std", "count"]).rename(columns={"count": "n"}))
    out["n"] = out["n"].fillna(0).astype(int)
    out["n_cells"] = out["n_cells"].fillna(0).astype(int)
    out["n_seeds"] = g[seed].nunique() if seed and seed in t else out["n"]
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    done = table[table["status"] == "completed"]
    out["mean_completed"] = (done.groupby([factor, *others], dropna=False)[final].mean()
                             .groupby(level=0, dropna=False).mean())
    ci = {}
    for level, sub in g:
        level = _key(level)
        strata = [v.to_numpy() for _, v in sub.groupby(others, dropna=False)[value]] \
            if others else [sub[value].to_numpy()]
        ci[level] = stats.boot_mean_interval(strata)
    out["ci_lo"] = [ci.get(k, (math.nan,) * 2)[0] for k in out.index]
    out["ci_hi"] = [ci.get(k, (math.nan,) * 2)[1] for k in out.index]
    out = _rank(out, hib)
    blocks = [*others, *([seed] if seed and seed in t else [])]
    values = []
    for level in out.index:
        sub = t[t[factor].eq(level) if not pd.isna(level) else t[factor].isna()]
        idx = pd.MultiIndex.from_frame(sub[blocks]) if blocks else \
            pd.Index(_unpaired(level, len(sub)))
        values.append(pd.Series(sub[value].to_numpy(), index=idx))
    out = _calls(out, values, hib, res)
    return out[[*COLUMNS[:8], "n_cells", *COLUMNS[8:]]].reset_index()
