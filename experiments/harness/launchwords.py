"""run.py's launch words: `dry_run=` and `resume=` act on the launch itself, never on a run's config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.harness import latest

TRUE, FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


class LaunchWordError(ValueError):
    """A launch word with a value it does not take: `str(err)` is one line naming it."""


@dataclass
class Words:
    """The command line without the launch words, and what they asked for."""

    argv: list[str] = field(default_factory=list)
    dry_run: bool = False
    resume: str | None = None  # "latest" or a folder


def parse(argv: Sequence[str]) -> Words:
    """Take `dry_run=` and `resume=` out of `argv`."""
    words = Words()
    for a in argv:
        key, eq, value = a.partition("=")
        if eq and key == "dry_run":
            if value.lower() not in TRUE + FALSE:
                raise LaunchWordError(f"invalid value dry_run={value} (allowed: true, false)")
            words.dry_run = value.lower() in TRUE
        elif eq and key == "resume":
            if not value:
                raise LaunchWordError("resume= needs latest or a sweep/run folder")
            words.resume = value
        else:
            words.argv.append(a)
    return words


def _quote(value: str) -> str:
    """A Hydra override value: single-quoted, so paths with any characters pass."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resume_argv(argv: list[str], resume: str, multirun: bool, default_dir: Path) -> list[str]:
    """`argv` that continues folder `resume` (or the newest beside `default_dir` for latest) in
    place: its hydra.sweep.dir / hydra.run.dir, and its recorded overrides when none are given."""
    if resume == "latest":
        folder = latest.read(default_dir.parent)
        if folder is None:
            kind = "sweep" if multirun else "run"
            raise LaunchWordError(f"resume=latest: no {default_dir.parent / latest.LATEST} "
                                  f"(no {kind} started here yet); pass resume=<folder>")
    else:
        folder = Path(resume)
        if not folder.is_dir():
            raise LaunchWordError(f"resume={resume}: no such folder")
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    flags = [a for a in argv if a.startswith("-")]
    given = [a for a in argv if not a.startswith("-") and not a.startswith(key + "=")]
    overrides = given or latest.recorded_overrides(folder, multirun)
    return [*flags, *overrides, f"{key}={_quote(str(folder))}"]
