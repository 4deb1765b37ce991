"""compare's statistical rules, each in one function: outcomes, intervals, tests, ties, importance.

docs/compare.md states every rule in words with its formula; the numbers here are the ones
groups.csv, summary.md, report.html and the console print.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05          # significance level of every test (after Holm's correction)
MIN_N = 3             # fewer replicates than this: a min-max range, no interval, no test
N_BOOT = 4000         # bootstrap resamples
N_PERM = 20000        # permutation-test resamples when exact enumeration is larger
RNG_SEED = 0          # bootstrap / permutation draws are reproducible
COUNTED = ("completed", "diverged", "failed")  # statuses whose runs enter the results


def penalty(finals: pd.Series, initial: pd.Series, hib: bool) -> float:
    """The value a diverged or failed run counts as: the worst value any compared run had at
    initialization (epoch 0) or at its end; nan when nothing finite was seen."""
    v = pd.concat([finals, initial]).astype(float)
    v = v[np.isfinite(v)]
    if v.empty:
        return math.nan
    return float(v.min() if hib else v.max())


def outcomes(status: pd.Series, final: pd.Series, epochs: pd.Series, worst: float) -> pd.Series:
    """Each run's result: its final value if completed; `worst` if it diverged, or failed after
    its first training epoch; nan (not counted) otherwise (failed before training, running,
    interrupted, refused, corrupt)."""
    out = pd.Series(np.nan, index=status.index, dtype=float)
    done = status.eq("completed")
    out[done] = final[done].astype(float)
    started = epochs.fillna(0).astype(float) >= 1
    out[status.eq("diverged") | (status.eq("failed") & started)] = worst
    return out


def counted_as(status: pd.Series, outcome: pd.Series) -> pd.Series:
    """Why each run's outcome is what it is: final, worst, or not counted."""
    out = pd.Series("not counted", index=status.index, dtype=object)
    out[status.eq("completed") & outcome.notna()] = "final value"
    out[~status.eq("completed") & outcome.notna()] = f"worst value ({'/'.join(COUNTED[1:])})"
    return out


def resolution(values: np.ndarray, metric: str) -> float:
    """The smallest difference that means something: for an accuracy, one validation sample
    (the smallest gap between two distinct accuracies seen); otherwise 1e-9 of the scale."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    scale = max(1.0, float(np.abs(v).max())) if v.size else 1.0
    if metric.endswith("acc") and v.size:
        gaps = np.diff(np.unique(np.round(v, 9)))
        gaps = gaps[gaps > 1e-9]
        if gaps.size:
            return float(gaps.min())
    return 1e-9 * scale


def boot_mean_interval(strata: Sequence[np.ndarray], level: float = 0.95,
                       n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap interval of the average of the strata means, resampling the
    replicates within each stratum (a cell's seeds; for a marginal, each cell's seeds). Stays
    inside the range of the data, so inside [0, 1] for an accuracy. (nan, nan) when a
    stratum has fewer than MIN_N replicates."""
    if not strata or min(len(s) for s in strata) < MIN_N:
        return math.nan, math.nan
    rng = np.random.default_rng(RNG_SEED)
    total = np.zeros(n_boot)
    for s in strata:
        s = np.asarray(s, dtype=float)
        idx = rng.integers(0, len(s), size=(n_boot, len(s)))
        total += s[idx].mean(axis=1)
    means = total / len(strata)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_t(d: np.ndarray) -> float:
    """Two-sided p of the paired t-test on differences d: t = mean(d) / (sd(d) / sqrt(n)),
    n - 1 degrees of freedom. Identical differences: p = 0 if they are non-zero, 1 if zero."""
    from scipy.special import stdtr  # Student t CDF (scipy.stats costs seconds to import)

    d = np.asarray(d, dtype=float)
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    if sd == 0 or not math.isfinite(sd):
        return 1.0 if mean == 0 else 0.0
    return float(2 * stdtr(n - 1, -abs(mean) / (sd / math.sqrt(n))))


def permutation_p(x: np.ndarray, y: np.ndarray, n_perm: int = N_PERM) -> float:
    """Two-sided p of the permutation test on the difference of means (exact when the number
    of splits is at most n_perm): the share of relabelings at least as extreme as observed."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    pooled, nx = np.concatenate([x, y]), len(x)
    obs = abs(x.mean() - y.mean())
    if math.comb(len(pooled), nx) <= n_perm:
        splits = np.array([np.isin(np.arange(len(pooled)), c)
                           for c in itertools.combinations(range(len(pooled)), nx)])
    else:
        rng = np.random.default_rng(RNG_SEED)
        splits = np.zeros((n_perm, len(pooled)), dtype=bool)
        for row in splits:
            row[rng.permutation(len(pooled))[:nx]] = True
    diff = np.abs((splits * pooled).sum(1) / nx - (~splits * pooled).sum(1) / (len(pooled) - nx))
    return float(np.mean(diff >= obs - 1e-12))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values: p_(i) * (m - i + 1), made monotone, capped at 1."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, p[i] * (len(p) - rank)))
        adj[i] = running
    return adj


@dataclass
class Contrast:
    """The leader against one other group: the difference, the test and the call."""

    other: int          # position of the other group
    diff: float         # leader mean - other mean, signed so that > 0 favours the leader
    test: str           # "paired t (n pairs)", "permutation", "none (n < 3)"
    p: float            # raw p (nan without a test)
    p_holm: float = math.nan
    call: str = ""      # "better", "tie", "untested"


def contrast(a: pd.Series, b: pd.Series, sign: float, res: float) -> Contrast:
    """Compare the outcomes of two groups indexed by their replicate key (seed, or matched
    block): paired t-test over shared keys if there are MIN_N, else a permutation test if each
    side has MIN_N, else none. A difference below the resolution is a tie whatever the test."""
    a, b = a.dropna(), b.dropna()
    diff = sign * (a.mean() - b.mean())
    shared = a.index.intersection(b.index)
    if a.index.is_unique and b.index.is_unique and len(shared) >= MIN_N:
        c = Contrast(-1, diff, f"paired t over {len(shared)} pairs",
                     paired_t((a[shared] - b[shared]).to_numpy()))
    elif len(a) >= MIN_N and len(b) >= MIN_N:
        c = Contrast(-1, diff, "permutation", permutation_p(a.to_numpy(), b.to_numpy()))
    else:
        c = Contrast(-1, diff, f"none (n < {MIN_N})", math.nan)
    if not abs(diff) >= res:
        c.call = "tie"
    return c


def best_set(values: list[pd.Series], order: list[int], hib: bool, res: float
             ) -> tuple[list[Contrast], list[int]]:
    """The leader (first of order) against every other group, Holm-corrected. Returns the
    contrasts and the tied set: the leader plus every group it does not beat with
    p_holm < ALPHA by more than the resolution. A group it cannot test against is tied when
    their min-max ranges overlap."""
    if not order:
        return [], []
    lead = order[0]
    sign = 1.0 if hib else -1.0
    cs = []
    for o in order[1:]:
        c = contrast(values[lead], values[o], sign, res)
        c.other = o
        cs.append(c)
    tested = [c for c in cs if not math.isnan(c.p)]
    for c, adj in zip(tested, holm([c.p for c in tested]), strict=True):
        c.p_holm = float(adj)
    tied = [lead]
    for c in cs:
        if c.call == "tie":
            pass
        elif math.isnan(c.p):
            a, b = values[lead].dropna(), values[c.other].dropna()
            overlap = a.min() <= b.max() and b.min() <= a.max()
            c.call = "tie" if overlap else "untested"
        else:
            c.call = "better" if c.p_holm < ALPHA and c.diff > 0 else "tie"
        if c.call == "tie":
            tied.append(c.other)
    return cs, tied


def within(table: pd.DataFrame, factors: list[str], value: str) -> tuple[float, int]:
    """Seed-to-seed variance inside configurations: (SS_within, df_within), where SS_within
    sums each run's squared gap to its cell mean and df_within = sum of (n_cell - 1)."""
    t = table.dropna(subset=[value])
    if not factors or t.empty:
        return float(((t[value] - t[value].mean()) ** 2).sum()), max(len(t) - 1, 0)
    cell = t.groupby(factors, dropna=False)[value]
    ss = float(((t[value] - cell.transform("mean")) ** 2).sum())
    return ss, int((cell.count() - 1).clip(lower=0).sum())


def anova(cells: pd.DataFrame, factors: list[str], ss_within: float = math.nan,
          df_within: int = 0) -> pd.DataFrame:
    """Variance decomposition of the cell means (one row per configuration, columns mean and
    n): for a factor A, effect_A(c) = mean of the cell means at c's level of A - grand mean;
    for a pair, effect_AB(c) = mean of the AB cell - mean_A - mean_B + grand. SS = sum over
    cells of effect^2, eta2 = SS / sum of (cell mean - grand)^2 (exact on a complete grid).
    p: F-test of the term against the seed noise, F = (sum over cells of n_c effect^2 / df)
    / (SS_within / df_within), df = (k_A - 1) or (k_A - 1)(k_B - 1); nan without replicates."""
    from scipy.special import fdtrc  # F survival function (scipy.stats costs seconds to import)

    c = cells.dropna(subset=["mean"])
    cols = ["term", "factors", "ss", "eta2", "p"]
    if len(c) < 2:
        return pd.DataFrame(columns=cols)
    y, n = c["mean"].to_numpy(dtype=float), c["n"].to_numpy(dtype=float)
    grand = y.mean()
    total = float(((y - grand) ** 2).sum())
    k = {f: c[f].nunique(dropna=False) for f in factors}
    main = {f: c.groupby(f, dropna=False)["mean"].transform("mean").to_numpy() - grand
            for f in factors}
    terms = [(f, (f,), main[f], k[f] - 1) for f in factors]
    for f, g in itertools.combinations(factors, 2):
        ab = c.groupby([f, g], dropna=False)["mean"].transform("mean").to_numpy() - grand
        terms.append((f"{f} × {g}", (f, g), ab - main[f] - main[g], (k[f] - 1) * (k[g] - 1)))
    rows = []
    for name, fs, e, df in terms:
        p = math.nan
        if df_within >= 1 and df >= 1 and ss_within > 0:
            p = float(fdtrc(df, df_within, (float((n * e ** 2).sum()) / df)
                            / (ss_within / df_within)))
        rows.append((name, fs, float((e ** 2).sum()), p))
    out = pd.DataFrame(rows, columns=["term", "factors", "ss", "p"])
    out["eta2"] = out["ss"] / total if total > 0 else 0.0
    return out[cols]


def confounded_pairs(runs: pd.DataFrame, factors: list[str]) -> list[tuple[str, str]]:
    """Pairs of factors that are not crossed: some combination of their levels has no run."""
    out = []
    for f, g in itertools.combinations(factors, 2):
        seen = runs[[f, g]].drop_duplicates().shape[0]
        if seen < runs[f].nunique(dropna=False) * runs[g].nunique(dropna=False):
            out.append((f, g))
    return out
