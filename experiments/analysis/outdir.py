"""compare's output folder: one comparison per folder, no stale file beside a new report."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

MANIFEST = "compare.json"  # the runs a folder's comparison covers and the files it wrote
FIXED = ("runs.csv", "groups.csv", "summary.md", "report.html")


class OutDirTaken(Exception):
    """The folder holds a comparison of another set of runs."""


def default_out(paths: list[Path], query: str | None = None) -> Path:
    """<sweep>/compare for one path (the deepest common parent's for several);
    compare-<filter> when a --filter chose the runs, so each set of runs has its folder."""
    dirs = [p.parent if p.is_file() else p for p in (q.resolve() for q in paths)]
    common = dirs[0]
    for d in dirs[1:]:
        while common not in (d, *d.parents):
            common = common.parent
    if not query:
        return common / "compare"
    slug = re.sub(r"\W+", "_", query).strip("_")[:40]
    return common / f"compare-{slug}-{hashlib.sha1(query.encode()).hexdigest()[:6]}"


def prepare(out: Path, run_dirs: list[str], force: bool = False) -> list[Path]:
    """Make out ready for a comparison of run_dirs: refuse (OutDirTaken) if it holds one of a
    different set of runs (not a subset of these: a sweep that has grown is the same
    comparison), unless force; returns the files the previous one wrote, for
    `remove_stale` once the new ones are written (so a report being watched in a browser is
    never missing while it is re-rendered)."""
    manifest = out / MANIFEST
    old: dict = {}
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = {}
        grown = set(old.get("runs", [])) <= set(run_dirs)  # the same sweep, more runs since
        if not grown and not force:
            raise OutDirTaken(
                f"{out} holds a comparison of another set of runs ({len(old.get('runs', []))} "
                f"runs, not these {len(run_dirs)}); pass --force to replace it or --out DIR")
        stale = [out / f for f in old.get("files", [])]
    elif (out / "report.html").exists():  # written before manifests existed
        stale = [*out.glob("*.png"), *(out / f for f in FIXED)]
    else:
        stale = []
    out.mkdir(parents=True, exist_ok=True)
    return [f for f in stale if f.parent == out]


def remove_stale(stale: list[Path], written: list[Path]) -> None:
    """Remove the previous comparison's files that this one did not write again."""
    keep = {f.name for f in written}
    for f in stale:
        if f.name not in keep:
            f.unlink(missing_ok=True)


def finish(out: Path, run_dirs: list[str], files: list[Path], args: dict) -> Path:
    """Record which runs this folder's comparison covers and which files it wrote."""
    doc = {"runs": sorted(run_dirs), "files": [f.name for f in files], "args": args}
    (out / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return out / MANIFEST
