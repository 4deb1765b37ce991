"""The write step of compare: runs.csv, groups.csv, summary.md and report.html from an Analysis."""

from __future__ import annotations

from pathlib import Path

from experiments.analysis import report
from experiments.analysis.analyse import Analysis


def write(a: Analysis, images: list[Path], out: Path, source: str) -> list[Path]:
    """Write the tables and the two reports into out (which exists); returns the files."""
    a.table.to_csv(out / "runs.csv", index=False)
    a.groups.to_csv(out / "groups.csv", index=False)
    rep = report.Report(
        source=source, metric=a.metric, hib=a.hib, factors=a.fx.factors, aliases=a.fx.aliases,
        groups=a.groups, by_factor=a.by_factor, table=a.table, verdict=a.verdict,
        warnings=a.warnings, images=images,
        errors={r.run_dir: str(r.error) for r in a.runs.itertuples()
                if r.status == "failed" and isinstance(r.error, str)})
    return [out / "runs.csv", out / "groups.csv",
            report.write_summary_md(rep, out / "summary.md"),
            report.write_report_html(rep, out / "report.html")]
