"""The verdict: which configuration won (or which are tied), which factor matters, what broke.

Every number is read from the tables of the Analysis (groups.csv, the per-factor tables, the
variance decomposition), so the console, summary.md and report.html say the same thing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from experiments.analysis import stats
from experiments.analysis.style import fmt

if TYPE_CHECKING:
    from experiments.analysis.analyse import Analysis

NOTABLE = 0.05           # an eta-squared below this, with tied levels, is "no detectable effect"
COMPARABLE = 0.5        # an interaction with at least half the smaller main effect's eta2 is described
INTERACTION_ONLY = 0.25  # "B matters only with A=a": B's effect elsewhere is below this share


def label(row: pd.Series, keys: list[str]) -> str:
    """"activation=relu, init=he" (or "all runs")."""
    return ", ".join(f"{k}={fmt(row[k])}" for k in keys) if keys else "all runs"


def n_(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def number(v: float) -> str:
    return "—" if pd.isna(v) else f"{v:.4g}"


def interval(row: pd.Series) -> str:
    """"[0.91, 0.95]" (95% bootstrap), or "range 0.90-0.93, n < 3: no interval"."""
    if pd.notna(row.get("ci_lo")) and row["min"] == row["max"]:
        return f"all {int(row['n'])} equal: no spread to estimate"
    if pd.notna(row.get("ci_lo")):
        return f"95% CI [{number(row['ci_lo'])}, {number(row['ci_hi'])}]"
    if row.get("n", 0) >= 2:
        return f"range {number(row['min'])}–{number(row['max'])}, n < {stats.MIN_N}: no interval"
    return f"n = {int(row.get('n', 0))}: no interval"


def _why_tied(groups: pd.DataFrame, i: int, res: float) -> str:
    r = groups.iloc[i]
    if abs(r["diff"]) < res:
        return "identical" if r["diff"] == 0 else "differ by less than the metric's resolution"
    if pd.isna(r["p_holm"]):
        return f"n < {stats.MIN_N}: not tested, ranges overlap"
    return f"{r['test']}, Holm p = {r['p_holm']:.2g}"


def leader(a: Analysis) -> str:
    """"Best: X ..." only when it beats every other configuration; otherwise the tied set."""
    g, keys = a.groups, a.fx.factors
    ranked = g[g["n"] > 0]
    if ranked.empty:
        return f"No run has a {a.metric} to rank, so nothing is ranked."
    top = ranked.iloc[0]
    what = f"{a.metric} {number(top['mean'])} ({interval(top)}, {n_(int(top['n']), 'run')})"
    if len(ranked) == 1:
        return f"One configuration ({label(top, keys)}): {what}."
    tied = [i for i in range(len(g)) if g["call"].iat[i] == "tied for best"]
    if top["call"] == "best":
        below = ranked.iloc[1:]
        worst_p = below["p_holm"].max()
        return (f"Best: {label(top, keys)}, {what}. It beats every other configuration "
                f"(paired tests over shared seeds, Holm-corrected p ≤ {worst_p:.2g}).")
    if top["call"] == "first (untested)":
        return (f"{label(top, keys)} ranks first with {what}; with n < {stats.MIN_N} seeds "
                "per configuration no test can confirm it, so no configuration is called best.")
    others = [i for i in tied if i != ranked.index[0]]
    names = "; ".join(f"{label(g.iloc[i], keys)} ({number(g['mean'].iat[i])}: "
                      f"{_why_tied(g, i, a.resolution)})" for i in others[:4])
    more = f" and {len(others) - 4} more" if len(others) > 4 else ""
    return (f"No single best configuration: {label(top, keys)} ranks first with {what}, "
            f"tied with {names}{more}.")


def _level_means(t: pd.DataFrame, f: str) -> str:
    return ", ".join(f"{fmt(r[f])} {number(r['mean'])}" for _, r in t.dropna(subset=["mean"])
                     .iterrows())


def _simple_effects(a: Analysis, f: str, g: str) -> dict:
    """Within each level of f: (best level of g, its lead over g's worst level), from the
    cell means averaged over the remaining factors."""
    cells = a.groups.dropna(subset=["mean"])
    m = cells.groupby([f, g], dropna=False)["mean"].mean()
    out = {}
    for lv, s in m.groupby(level=0, dropna=False):
        s = s.droplevel(0)
        best = s.idxmax() if a.hib else s.idxmin()
        out[lv] = (best, float(s.max() - s.min()))
    return out


def interaction(a: Analysis, f: str, g: str) -> str:
    """"batchnorm matters only with init=normal" or "the best depth depends on activation"."""
    for x, y in ((f, g), (g, f)):
        eff = _simple_effects(a, x, y)
        top = max(eff, key=lambda k: eff[k][1])
        rest = [v[1] for k, v in eff.items() if k != top]
        if eff[top][1] > 0 and rest and max(rest) <= INTERACTION_ONLY * eff[top][1]:
            return (f"{y} matters only with {x}={fmt(top)} ({y}={fmt(eff[top][0])} leads by "
                    f"{number(eff[top][1])} there, by at most {number(max(rest))} otherwise)")
    eff = _simple_effects(a, f, g)
    return (f"the effect of {g} depends on {f}: "
            + "; ".join(f"with {f}={fmt(k)}, {g}={fmt(b)} leads by {number(d)}"
                        for k, (b, d) in eff.items()))


def factors(a: Analysis) -> list[str]:
    """What the variance decomposition and the per-factor tests support, in sentences."""
    out = []
    imp = a.importance
    mains = imp[imp["factors"].map(len) == 1].sort_values("eta2", ascending=False)
    pairs = imp[imp["factors"].map(len) == 2]
    effective = []
    for _, m in mains.iterrows():
        f = m["factors"][0]
        t = a.by_factor[f]
        ranked = t.dropna(subset=["mean"])
        tied = (not ranked["call"].str.startswith("below").any()
                and not ranked["call"].eq("best").any())
        if m["eta2"] == 0 or (tied and m["eta2"] < NOTABLE):
            out.append(f"{f} has no detectable effect: its levels are tied "
                       f"({_level_means(t, f)}).")
        elif tied:
            top = ranked.iloc[0]
            out.append(f"{f}={fmt(top[f])} ranks first on average over the other factors "
                       f"({_level_means(t, f)}; η² {m['eta2']:.0%}){_damage(t, f)}, but the "
                       f"difference is not confirmed ({_tests(t, f)}): more seeds would tell.")
        else:
            effective.append((f, m, t))
    if effective:
        f, m, t = effective[0]
        top = t.iloc[0]
        out.insert(0, f"The factor that matters most is {f}: it explains {m['eta2']:.0%} of the "
                      f"variance between configuration means (η²). Averaged over the other "
                      f"factors: {_level_means(t, f)}; {f}={fmt(top[f])} "
                      + _level_call(a, t, f) + _damage(t, f) + ".")
        for f, m, t in effective[1:]:
            top = t.iloc[0]
            out.append(f"{f} matters too (η² {m['eta2']:.0%}): {_level_means(t, f)}; "
                       f"{f}={fmt(top[f])} " + _level_call(a, t, f) + _damage(t, f) + ".")
    for _, r in pairs.iterrows():
        f, g = r["factors"]
        main = mains.set_index(mains["factors"].map(lambda x: x[0]))["eta2"]
        smaller = min(main.get(f, 0), main.get(g, 0))
        if r["eta2"] >= NOTABLE and r["eta2"] >= COMPARABLE * smaller \
                and not r["p"] >= stats.ALPHA:
            test = f"F-test p = {r['p']:.2g}" if pd.notna(r["p"]) else "one seed: not tested"
            out.append(f"Interaction: {interaction(a, f, g)} ({f} × {g} explains "
                       f"{r['eta2']:.0%} of the variance, comparable to a main effect; {test}).")
    for f, g in a.confounded:
        out.append(f"{f} and {g} are confounded (not every combination of their levels was run): "
                   f"no main-effect claim is made for either.")
    for k, f in a.fx.aliases.items():
        out.append(f"{k} follows {f} one-to-one: their effects cannot be told apart.")
    return out


def _tests(t: pd.DataFrame, f: str) -> str:
    """"vs false: paired t over 4 pairs, Holm p = 0.15; vs x: n < 3, untested"."""
    out = []
    for _, r in t.iloc[1:].dropna(subset=["mean"]).iterrows():
        if pd.notna(r["p_holm"]):
            out.append(f"vs {fmt(r[f])}: {r['test']}, Holm p = {r['p_holm']:.2g}")
        else:
            out.append(f"vs {fmt(r[f])}: n < {stats.MIN_N}, untested")
    return "; ".join(out)


def _level_call(a: Analysis, t: pd.DataFrame, f: str) -> str:
    """"is best (vs ...: test, p)" or "ranks first, tied with ..."."""
    if t["call"].iat[0] == "best":
        return f"is best ({_tests(t, f)})"
    tied = t.iloc[1:][t["call"].iloc[1:] == "tied for best"]
    names = ", ".join(fmt(v) for v in tied[f])
    if names:
        return f"ranks first, tied with {names}"
    return f"ranks first (the others are below its range; n < {stats.MIN_N}: untested)"


def _damage(t: pd.DataFrame, f: str) -> str:
    """"; 2 of the 4 runs with batchnorm=false diverged or failed"."""
    bad = t[(t["n_diverged"] + t["n_failed"]) > 0]
    return "".join(f"; {int(r['n_diverged'] + r['n_failed'])} of the {int(r['n_runs'])} runs "
                   f"with {f}={fmt(r[f])} diverged or failed" for _, r in bad.iterrows())


def problems(a: Analysis) -> str:
    """How many runs diverged, failed or are unfinished, and what they count as."""
    t = a.table
    count = {s: int(t["status"].eq(s).sum()) for s in ("diverged", "failed", "running")}
    other = len(t) - int(t["status"].isin(["completed", *count]).sum())
    if not any(count.values()) and not other:
        return ""
    counted = int((~t["status"].eq("completed") & t[a.value].notna()).sum())
    parts = [f"{n_(count['diverged'], 'run')} diverged, {count['failed']} failed, "
             f"{count['running']} still running and {other} other (interrupted, refused, "
             f"corrupt)."]
    if counted:
        parts.append(f"The {n_(counted, 'run')} that diverged or failed after starting count "
                     f"as {number(a.worst)}, the worst {a.metric} any run had at "
                     f"initialization or at its end.")
    return " ".join(parts)


def verdict(a: Analysis, hint: str = "") -> str:
    """One paragraph: leader or tied set, the factor that matters and why, what broke."""
    parts = [leader(a), *factors(a)]
    if hint:
        parts.append(hint)
    parts.append(problems(a))
    return " ".join(p for p in parts if p)

