"""summary.md and a self-contained report.html (images inlined, offline JavaScript): the context,
the verdict, the ranked tables, the variance decomposition, every run and every figure."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from experiments.analysis.context import Context
from experiments.analysis.style import fmt
from experiments.analysis.verdict import interval, number

if TYPE_CHECKING:
    from experiments.analysis.analyse import Analysis
from experiments.record import LABELS

MAX_HTML_ROWS = 200
MAX_RUN_ROWS = 5000
CAPTIONS = {
    "curves_": "Learning curves of the metric: mean over completed runs per level (validation "
               "solid, with a 95% bootstrap band over seeds when every configuration of the "
               "line has at least 3; training dashed); diverged runs drawn one by one up to "
               "their divergence (×), running runs dotted.",
    "curves_loss": "Learning curves of the loss, drawn like the metric's.",
    "final_by_factor": "Outcome per level of each factor: the average of the configuration "
                       "means (dot), its 95% interval from resampling seeds within each "
                       "configuration (bars, when every configuration has 3 seeds), single "
                       "runs as gray dots (× = diverged or failed, counted at the worst value).",
    "heatmap_": "Mean outcome for each pair of levels, averaged over seeds and the remaining "
                "factors; every heatmap of the metric shares one colour scale; n = runs counted.",
    "signal_propagation": "Per-layer activation std and weight-gradient norm at init and after "
                          "training (log scale), one panel column per depth: vanishing or "
                          "exploding signals show as slopes.",
    "layers_over_epochs": "Per hidden layer (one line each, darker = closer to the input), the "
                          "fraction of dead (ReLU) or saturated (sigmoid, tanh) units and the "
                          "mean activation at every epoch, one column per configuration, mean "
                          "over its seeds (completed runs): a top layer pinned at saturation "
                          "(mean near 0 for sigmoid) is Glorot & Bengio's stalled net.",
    "walltime": "Final metric against the run's wall time: what each configuration costs.",
    "pre_activation_percentiles": "Ioffe & Szegedy (2015) Fig. 1: the metric against steps, "
                                  "then the 15th/50th/85th percentiles of the last hidden "
                                  "layer's input over training, one run per configuration.",
    "layer_activation_bands": "Glorot & Bengio (2010) Fig. 2: per hidden layer, the mean "
                              "activation with a ±std band over training, one run per "
                              "configuration, never averaged across levels.",
    "parallel_coordinates": "One line per run through an axis per varied key and the final "
                            "metric, colored by the metric: which combinations end where.",
}
RULES = ("Outcome rule: a completed run counts with its final value; a run that diverged, or "
         "failed after its first epoch, counts as {worst} (the worst {metric} any run had at "
         "initialization or at its end); runs that failed before training, are running, "
         "interrupted or unreadable are listed but not counted. Intervals: 95% percentile "
         "bootstrap over seeds within each configuration (n < 3: the min–max range, no "
         "interval). A factor level averages its configuration means. \"Best\" needs a paired "
         "test over shared seeds (else a permutation test) against every other group with "
         "Holm-corrected p < 0.05; differences below {res} are ties. See docs/compare.md.")


def _int(v: object) -> str:
    return "" if pd.isna(v) else str(int(v))


def _call(r: pd.Series) -> str:
    if r["call"] in ("below", "tied for best") and pd.notna(r["p_holm"]):
        return f"{r['call']} (p={r['p_holm']:.2g})"
    return str(r["call"])


def table_rows(t: pd.DataFrame, keys: list[str], metric: str) -> tuple[list[str], list[list[str]]]:
    """A ranked groups/levels table as header + string cells (integers as integers)."""
    head = ["rank", *keys, f"{metric} (outcome)", "95% CI or range", "n",
            "completed only", "diverged", "failed", "running", "other", "vs leader"]
    if "n_cells" in t:
        head.insert(len(keys) + 4, "configs")
    rows = []
    for _, r in t.iterrows():
        row = [_int(r["rank"]), *(fmt(r[k]) for k in keys), number(r["mean"]),
               interval(r) if r["n"] else "", _int(r["n"]), number(r["mean_completed"]),
               _int(r["n_diverged"]), _int(r["n_failed"]), _int(r["n_running"]),
               _int(r["n_other"]), _call(r)]
        if "n_cells" in t:
            row.insert(len(keys) + 4, _int(r["n_cells"]))
        rows.append(row)
    return head, rows


def importance_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    imp = a.importance.sort_values("eta2", ascending=False)
    rows = [[r["term"], f"{r['eta2']:.1%}", "" if pd.isna(r["p"]) else f"{r['p']:.2g}"]
            for _, r in imp.iterrows()]
    return ["term", "η² (share of variance between configuration means)", "F-test p"], rows


def facts(a: Analysis, ctx: Context) -> list[str]:
    """The context lines: fixed settings, factors, code, commands, dates, counts, the rules."""
    status = ", ".join(f"{v} {k}" for k, v in ctx.statuses.items())
    direction = "higher is better" if a.hib else "lower is better"
    missing = sum(ctx.never_started.values())
    out = [f"Runs: {len(a.table)} ({status})" + (f"; {missing} more were planned but never "
                                                 "started (see Problems)." if missing else "."),
           f"Metric: {a.metric} ({direction}), the last logged value of each run.",
           "Varied: " + ("; ".join(f"{k} ({', '.join(v)})" for k, v in ctx.varied.items())
                         or "nothing (one configuration)") + ".",
           "Held fixed: " + (", ".join(f"{k}={v}" for k, v in ctx.fixed.items()) or "—") + "."]
    labels = [c for c in a.table.columns if c.split(".")[0] in LABELS]
    if labels:  # name, notes and tags given on the command line: shown, never a factor
        out.append("Labels: " + "; ".join(
            f"{c} " + ", ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in
                                a.table[c].dropna().astype(str).value_counts().items())
            for c in labels) + ".")
    if ctx.commits:
        out.append("Code: git " + ", ".join(ctx.commits) + ".")
    out += [f"Command: `{c}`" for c in ctx.commands]
    if ctx.dates:
        out.append(f"Run records written: {ctx.dates}.")
    out.append(RULES.format(worst=number(a.worst), metric=a.metric,
                            res=f"{a.resolution:.3g}" + (" (one validation sample)"
                                                         if a.metric.endswith("acc") else "")))
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_summary_md(a: Analysis, ctx: Context, source: str, path: Path) -> Path:
    """The context, the verdict, the ranked tables, the decomposition, problems."""
    out = [f"# Sweep comparison: {source}", "", a.verdict, ""]
    out += [f"- {f}" for f in facts(a, ctx)] + ["", "## Ranking of configurations", ""]
    out.append(_md_table(*table_rows(a.groups, a.fx.factors, a.metric)))
    for f, t in a.by_factor.items():
        out += ["", f"## By {f} (average of configuration means)", ""]
        out.append(_md_table(*table_rows(t, [f], a.metric)))
    if len(a.importance):
        out += ["", "## What explains the differences (variance decomposition)", ""]
        out.append(_md_table(*importance_rows(a)))
    out += _problems_md(a)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _errors(a: Analysis) -> dict[str, str]:
    return {r.run_dir: str(r.error) for r in a.runs.itertuples()
            if r.status in ("failed", "refused") and isinstance(r.error, str)}


def _problems_md(a: Analysis) -> list[str]:
    out = []
    if a.warnings:
        out += ["", "## Problems", ""] + [f"- {w}" for w in a.warnings]
    if _errors(a):
        out += ["", "## Failed runs", ""] + [f"- {d}: {e}" for d, e in _errors(a).items()]
    return out


def _html_table(head: list[str], rows: list[list[str]], attrs: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows[:MAX_HTML_ROWS])
    more = (f"<p>{len(rows) - MAX_HTML_ROWS} more rows in groups.csv.</p>"
            if len(rows) > MAX_HTML_ROWS else "")
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>{more}"


def run_rows(a: Analysis, out: Path) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """The per-run table: (text, link) cells; the run_dir cell links to the run's folder."""
    t = a.table
    cols = ["run_dir", "status", *a.fx.varying, *([a.fx.seed] if a.fx.seed in t else []),
            a.final, a.value, "counted_as", "epochs", "wall_time_s"]
    cols = list(dict.fromkeys(c for c in cols if c in t))
    rows = []
    for _, r in t.head(MAX_RUN_ROWS).iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "run_dir":
                rel = os.path.relpath(v, out)
                cells.append((str(v), Path(rel).as_posix() + "/"))
            elif c in ("epochs",) or isinstance(v, bool):
                cells.append((fmt(v) if isinstance(v, bool) else _int(v), ""))
            elif isinstance(v, float):
                cells.append((number(v) if c != "wall_time_s" else f"{v:.1f}", ""))
            else:
                cells.append((fmt(v), ""))
        rows.append(cells)
    return cols, rows


SCRIPT = """
(function(){
  const table = document.getElementById('runs');
  const body = table.tBodies[0];
  const box = document.getElementById('runs-filter');
  const count = document.getElementById('runs-count');
  function show(){
    const q = box.value.trim().toLowerCase();
    let n = 0;
    for (const tr of body.rows){
      const hit = !q || tr.textContent.toLowerCase().includes(q);
      tr.style.display = hit ? '' : 'none';
      if (hit) n++;
    }
    count.textContent = n + ' of ' + body.rows.length + ' runs';
  }
  function key(td){
    const t = td.textContent.trim();
    const x = Number(t);
    return (t !== '' && !Number.isNaN(x)) ? [0, x, ''] : [1, 0, t.toLowerCase()];
  }
  table.tHead.rows[0].querySelectorAll('th').forEach(function(th, i){
    th.addEventListener('click', function(){
      const dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
      table.tHead.rows[0].querySelectorAll('th').forEach(h => delete h.dataset.dir);
      th.dataset.dir = dir;
      const rows = Array.from(body.rows);
      rows.sort(function(a, b){
        const x = key(a.cells[i]), y = key(b.cells[i]);
        const c = x[0] - y[0] || (x[1] - y[1]) || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0);
        return dir === 'asc' ? c : -c;
      });
      rows.forEach(r => body.appendChild(r));
    });
  });
  box.addEventListener('input', show);
  show();
})();
"""


def _runs_html(a: Analysis, out: Path) -> str:
    cols, rows = run_rows(a, out)
    th = "".join(f"<th title='click to sort'>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td><a href='{html.escape(link)}'>{html.escape(text)}</a></td>"
                         if link else f"<td>{html.escape(text)}</td>" for text, link in r)
        + "</tr>" for r in rows)
    more = (f"<p>First {MAX_RUN_ROWS} of {len(a.table)} runs; all are in runs.csv.</p>"
            if len(a.table) > MAX_RUN_ROWS else "")
    return ("<h2>Every run</h2><p><input id='runs-filter' type='search' "
            "placeholder='filter: any text in a row' size='40'> <span id='runs-count'></span>"
            " — click a header to sort.</p>"
            f"<div class='scroll'><table id='runs'><thead><tr>{th}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>{more}<script>{SCRIPT}</script>")


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
figcaption{color:#555;font-size:.9em}#runs th{cursor:pointer}#runs th[data-dir=asc]::after{
content:' ▲'}#runs th[data-dir=desc]::after{content:' ▼'}.scroll{overflow-x:auto}"""


def write_report_html(a: Analysis, ctx: Context, source: str, images: list[Path],
                      path: Path, decorate: Callable[[str], str] | None = None) -> Path:
    """One page, no server, no external file: context, verdict, tables, runs, inlined PNGs.
    `decorate` edits the page before it is written (the live view's reload tag). Written to a
    temporary file and renamed over `path`: a browser reloading it reads the old page or the
    new one, never a part."""
    esc = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Sweep comparison: {esc(source)}</title><style>{CSS}</style></head>"
             f"<body><h1>Sweep comparison</h1><p><code>{esc(source)}</code></p>",
             f"<p class='verdict'>{esc(a.verdict)}</p><ul>",
             "".join(f"<li>{esc(f)}</li>" for f in facts(a, ctx)), "</ul>",
             "<h2>Ranking of configurations</h2>",
             _html_table(*table_rows(a.groups, a.fx.factors, a.metric))]
    for f, t in a.by_factor.items():
        parts += [f"<h3>By {esc(f)} (average of configuration means)</h3>",
                  _html_table(*table_rows(t, [f], a.metric))]
    if len(a.importance):
        parts += ["<h3>What explains the differences (variance decomposition)</h3>",
                  _html_table(*importance_rows(a))]
    parts.append("<h2>Figures</h2>")
    for img in images:
        data = base64.b64encode(img.read_bytes()).decode("ascii")
        parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{esc(img.stem)}'>"
                     f"<figcaption><b>{esc(img.name)}</b>: {esc(_caption(img.stem))}"
                     f"</figcaption></figure>")
    parts.append(_runs_html(a, path.parent))
    if a.warnings:
        parts.append("<h2>Problems</h2><ul>" +
                     "".join(f"<li>{esc(w)}</li>" for w in a.warnings) + "</ul>")
    if _errors(a):
        parts.append("<h2>Failed runs</h2><ul>" + "".join(
            f"<li><code>{esc(d)}</code>: {esc(e)}</li>" for d, e in _errors(a).items()) + "</ul>")
    parts.append("</body></html>\n")
    text = "".join(parts)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(decorate(text) if decorate else text, encoding="utf-8")
    os.replace(tmp, path)
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

