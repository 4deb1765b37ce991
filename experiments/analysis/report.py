"""summary.md and a self-contained report.html (images inlined): ranking, verdict, every plot."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from experiments.analysis.style import fmt

MAX_HTML_ROWS = 200
CAPTIONS = {
    "curves_": "Learning curves of the metric, validation (solid, with a 95% CI band) and "
               "training (dashed), one color per level.",
    "curves_loss": "Learning curves of the loss: validation solid with a 95% CI band, "
                   "training dashed.",
    "final_by_factor": "Final metric per level of each factor, averaged over seeds and every "
                       "other factor; bars are 95% CIs, gray dots single runs.",
    "heatmap_": "Mean final metric for each pair of levels, averaged over seeds and the "
                "remaining factors; n = completed runs per cell.",
    "signal_propagation": "Per-layer activation std and weight-gradient norm at init and after "
                          "training (log scale): vanishing or exploding signals show as slopes.",
    "layers_over_epochs": "Per hidden layer (one line each, darker = closer to the input), the "
                          "fraction of dead (ReLU) or saturated (sigmoid, tanh) units and the "
                          "mean activation at every epoch, mean over seeds of completed runs: a "
                          "top layer pinned at saturation (mean near 0 for sigmoid) is Glorot & "
                          "Bengio's stalled net.",
    "walltime": "Final metric against the run's wall time: what each configuration costs.",
}


@dataclass
class Report:
    """Everything the two report files say."""

    source: str
    metric: str
    hib: bool
    factors: list[str]
    aliases: dict[str, str]
    groups: pd.DataFrame                  # group_stats over all factors, ranked
    by_factor: dict[str, pd.DataFrame]    # factor -> group_stats over that factor alone
    table: pd.DataFrame                   # runs.csv
    verdict: str
    warnings: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # run_dir -> error of a failed run


def _label(row: pd.Series, keys: list[str]) -> str:
    return ", ".join(f"{k}={fmt(row[k])}" for k in keys) if keys else "all runs"


def _msn(row: pd.Series) -> str:
    if row["n"] == 0:
        return "— (0)"
    std = "" if pd.isna(row["std"]) else f" ± {row['std']:.3g}"
    return f"{row['mean']:.4g}{std} ({int(row['n'])})"


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def verdict(groups: pd.DataFrame, factors: list[str], by_factor: dict[str, pd.DataFrame],
            metric: str, hib: bool, why: str = "") -> str:
    """One paragraph: which configuration won, by how much, what mattered most, what broke."""
    done = groups[groups["n"] > 0]
    total = {s: int(groups[f"n_{s}"].sum()) for s in ("runs", "diverged", "failed", "other")}
    if done.empty:
        return (f"No run completed with a {metric} ({total['runs']} runs: {total['diverged']} "
                f"diverged, {total['failed']} failed, {total['other']} did not finish), so "
                "nothing is ranked.")
    best = done.iloc[0]
    seeds = int(best.get("n_seeds", best["n"]))
    spread = f" ± {best['std']:.2g}" if pd.notna(best["std"]) else ""
    parts = [f"Best: {_label(best, factors)}, final {metric} {best['mean']:.4g}{spread}"
             + (f" (mean ± std over {_n(int(best['n']), 'run')}, {_n(seeds, 'seed')})."
                if spread else f" ({_n(int(best['n']), 'run')}).")]
    if len(done) > 1:
        second, worst = done.iloc[1], done.iloc[-1]
        gap = abs(best["mean"] - second["mean"])
        cis = best["ci95"] + second["ci95"]
        clear = ("the 95% CIs do not overlap" if pd.notna(cis) and gap > cis else
                 "within the 95% CIs, so not a clear win" if pd.notna(cis) else
                 "too few seeds for a CI")
        lead = (f"It leads the runner-up ({_label(second, factors)}, {second['mean']:.4g}) "
                f"by {gap:.3g} ({clear})")
        if len(done) > 2:
            lead += (f" and the worst ({_label(worst, factors)}, {worst['mean']:.4g}) by "
                     f"{abs(best['mean'] - worst['mean']):.3g}")
        parts.append(lead + ".")
    spread = {f: t["mean"].max() - t["mean"].min() for f, t in by_factor.items()
              if t["mean"].notna().sum() > 1}
    if spread:
        f = max(spread, key=lambda k: spread[k])
        t = by_factor[f].dropna(subset=["mean"])
        hi, lo = t.iloc[0], t.iloc[-1]
        parts.append(f"The factor that matters most is {f}: averaged over everything else, "
                     f"{metric} is {hi['mean']:.4g} with {f}={fmt(hi[f])} and {lo['mean']:.4g} "
                     f"with {f}={fmt(lo[f])}.")
    if why:
        parts.append(why)
    if total["diverged"] or total["failed"] or total["other"]:
        n_bad = groups["n_diverged"] + groups["n_failed"]
        bad = groups.assign(_bad=n_bad)[n_bad > 0].sort_values("_bad", ascending=False,
                                                              kind="stable")
        where = "; ".join(f"{_label(r, factors)}: {r['_bad']}" for _, r in bad.head(3).iterrows())
        parts.append(f"{_n(total['diverged'], 'run')} diverged, {total['failed']} failed and "
                     f"{total['other']} did not finish; they are left out of every mean"
                     + (f" (most in {where})." if where and factors else "."))
    return " ".join(parts)


def _rows(groups: pd.DataFrame, keys: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    head = ["rank", *keys, f"final {metric}: mean ± std (n)", "95% CI ±", "diverged", "failed",
            "incomplete"]
    rows = []
    for _, r in groups.iterrows():
        ci = "" if pd.isna(r["ci95"]) else f"{r['ci95']:.3g}"
        rows.append([str(r["rank"]), *(fmt(r[k]) for k in keys), _msn(r), ci,
                     str(r["n_diverged"]), str(r["n_failed"]), str(r["n_other"])])
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _facts(rep: Report) -> list[str]:
    counts = rep.table["status"].value_counts()
    status = ", ".join(f"{v} {k}" for k, v in counts.items())
    direction = "higher is better" if rep.hib else "lower is better"
    facts = [f"Runs: {len(rep.table)} ({status}); only completed runs enter the means.",
             f"Metric: final {rep.metric} ({direction}).",
             "Factors: " + ("; ".join(f"{f} ({', '.join(map(fmt, pd.unique(rep.table[f])))})"
                                      for f in rep.factors) or "none (one configuration)") + "."]
    if rep.aliases:
        facts.append("Keys that only follow a factor: " + ", ".join(
            f"{k} (follows {f})" for k, f in rep.aliases.items()) + ".")
    return facts


def write_summary_md(rep: Report, path: Path) -> Path:
    """Ranked groups as a Markdown table, the verdict, per-factor means, problems."""
    out = [f"# Sweep comparison: {rep.source}", "", rep.verdict, ""]
    out += [f"- {f}" for f in _facts(rep)] + ["", "## Ranking", ""]
    out.append(_md_table(*_rows(rep.groups, rep.factors, rep.metric)))
    for f, t in rep.by_factor.items():
        out += ["", f"## By {f} (averaged over seeds and the other factors)", ""]
        out.append(_md_table(*_rows(t, [f], rep.metric)))
    if rep.warnings:
        out += ["", "## Problems", ""] + [f"- {w}" for w in rep.warnings]
    if rep.errors:
        out += ["", "## Failed runs", ""] + [f"- {d}: {e}" for d, e in rep.errors.items()]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows[:MAX_HTML_ROWS])
    more = (f"<p>{len(rows) - MAX_HTML_ROWS} more rows in groups.csv.</p>"
            if len(rows) > MAX_HTML_ROWS else "")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>{more}"


def _caption(name: str) -> str:
    for prefix, text in sorted(CAPTIONS.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(prefix):
            return text
    return ""


CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid
#ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}td:nth-child(n+2){white-space:
nowrap}figure{margin:1.5em 0}img{max-width:100%;height:auto;border:1px solid #eee}
.verdict{font-size:1.1em;background:#f6f9ff;border-left:4px solid #4a7;padding:.6em 1em}
figcaption{color:#555;font-size:.9em}"""


def write_report_html(rep: Report, path: Path) -> Path:
    """One page, no server, no external file: tables, verdict and base64-inlined PNGs."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Sweep comparison: {esc(rep.source)}</title><style>{CSS}</style></head>"
             f"<body><h1>Sweep comparison</h1><p><code>{esc(rep.source)}</code></p>",
             f"<p class='verdict'>{esc(rep.verdict)}</p><ul>",
             "".join(f"<li>{esc(f)}</li>" for f in _facts(rep)), "</ul><h2>Ranking</h2>",
             _html_table(*_rows(rep.groups, rep.factors, rep.metric))]
    for f, t in rep.by_factor.items():
        parts += [f"<h3>By {esc(f)}</h3>", _html_table(*_rows(t, [f], rep.metric))]
    parts.append("<h2>Plots</h2>")
    for img in rep.images:
        data = base64.b64encode(img.read_bytes()).decode("ascii")
        parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{esc(img.stem)}'>"
                     f"<figcaption><b>{esc(img.name)}</b>: {esc(_caption(img.stem))}"
                     f"</figcaption></figure>")
    if rep.warnings:
        parts.append("<h2>Problems</h2><ul>" +
                     "".join(f"<li>{esc(w)}</li>" for w in rep.warnings) + "</ul>")
    parts.append("</body></html>\n")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def signal_hint(prof: pd.DataFrame, by: str | None) -> str:
    """"At init, the last hidden layer's activation std is 0.9 with init=he and 1e-05 with ..."""
    if by is None or prof.empty or prof[by].nunique() < 2:
        return ""
    last_hidden = prof.groupby(by)["layer"].transform("max") - 1
    at = prof[prof["layer"] == last_hidden].groupby(by)["act_std"].median().dropna()
    if len(at) < 2 or not (at > 0).all():
        return ""
    hi, lo = fmt(at.idxmax()), fmt(at.idxmin())
    if at.max() / at.min() < 10:
        return ""
    return (f"Why, in part: at initialization the last hidden layer's activation std "
            f"(median) is {at.max():.3g} with {by}={hi} but {at.min():.3g} with {by}={lo} "
            f"(a factor of {at.max() / at.min():.3g}; see signal_propagation.png).")
