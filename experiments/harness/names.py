"""Path-safe run dir names from a job's overrides, and the check that a run dir stays inside."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

MAX_NAME_BYTES = 200  # file systems allow 255 per name; room for the job-number prefix
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")  # separators and control characters


def safe_part(text: str) -> str:
    """`text` with no path separator, control character or `..` left in it."""
    out = _UNSAFE.sub("_", text)
    while ".." in out:
        out = out.replace("..", "_")
    return out


def run_name(overrides: Sequence[str], exclude: Sequence[str] = ()) -> str:
    """`k=v,k2=v2` of a job's overrides (sorted), path-safe, keys under `exclude` left out.

    The `run_name` resolver of hydra.sweep.subdir (schema.register adds the free keys to
    `exclude`); a name longer than MAX_NAME_BYTES is cut and ends in a short hash.
    """
    skip = set(exclude)
    items = []
    for o in overrides:
        key = str(o).split("=", 1)[0].lstrip("+~")
        if key in skip or key.split(".")[0] in skip:
            continue
        items.append(str(o))
    name = safe_part(",".join(sorted(items)))
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[: MAX_NAME_BYTES - 11].decode(errors="ignore") + "~" + digest
    return name


def folder_suffix(name: str, preset: str | None = None) -> str:
    """`_<name>` for a sweep/run folder: `name=` if given, else the preset's, else nothing."""
    label = safe_part(str(name or preset or "").strip()).replace(" ", "_")
    return f"_{label}" if label else ""


def inside(path: Path, root: Path) -> bool:
    """True if `path` resolves to a strict descendant of `root` (symlinks and `..` followed)."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p != r and p.is_relative_to(r)
