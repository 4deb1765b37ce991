"""`latest`: a symlink beside the newest sweep (run), and the command-line words that read it.

`outputs/sweeps/latest -> <date>_<time>_<name>` is repointed when a sweep starts, and
`outputs/runs/latest` when a single run ends, so `ls outputs/sweeps/latest/` and `resume=latest`
find the newest one without typing its name.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import yaml

LATEST = "latest"
HYDRA_INTERNAL = ("hydra.sweep.dir", "hydra.run.dir", "hydra.callbacks.")  # set by cli(), not users


def point(target: Path) -> None:
    """Make `<target's parent>/latest` a relative symlink to `target` (atomically replaced)."""
    target = Path(target)
    link = target.parent / LATEST
    if target.name == LATEST:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{LATEST}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
    try:
        os.symlink(target.name, tmp)
        os.replace(tmp, link)
    except OSError:  # a file system without symlinks: `latest` is a convenience only
        Path(tmp).unlink(missing_ok=True)


def read(parent: Path) -> Path | None:
    """The folder `<parent>/latest` points to, if it exists."""
    link = Path(parent) / LATEST
    return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None


def recorded_overrides(folder: Path, multirun: bool) -> list[str]:
    """The user's overrides of the launch that made `folder` (Hydra's own record of it)."""
    path = folder / ("multirun.yaml" if multirun else ".hydra/hydra.yaml")
    try:
        cfg = yaml.safe_load(path.read_text())
        task = cfg["hydra"]["overrides"]["task"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return []
    return [str(o) for o in task if not str(o).lstrip("+~").startswith(HYDRA_INTERNAL)]
