"""The write step of compare: runs.csv, groups.csv, summary.md and report.html from an Analysis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from experiments.analysis import report
from experiments.analysis.analyse import Analysis
from experiments.analysis.context import context


def write(a: Analysis, images: list[Path], out: Path, source: str,
          decorate: Callable[[str], str] | None = None) -> list[Path]:
    """Write the tables and the two reports into out (which exists); returns the files.
    `decorate` edits report.html before it is written (the live view's reload tag)."""
    a.table.to_csv(out / "runs.csv", index=False)
    a.groups.to_csv(out / "groups.csv", index=False)
    ctx = context(a.runs, a.fx.varying, list(a.rs.runs["run_dir"]))
    for sweep, n in ctx.never_started.items():
        a.warnings.append(f"{sweep}: {n} of its planned jobs left no run dir (the sweep was "
                          "interrupted before starting them); they are in no count")
    return [out / "runs.csv", out / "groups.csv",
            report.write_summary_md(a, ctx, source, out / "summary.md"),
            report.write_report_html(a, ctx, source, images, out / "report.html", decorate)]
