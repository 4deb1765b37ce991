"""run.py's launch words: `dry_run=` and `resume=` act on the launch itself, never on a run's config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra._internal.utils import get_args_parser

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
    flags, given = split_flags(argv)
    given = [a for a in given if not a.startswith(key + "=")]
    overrides = given or latest.recorded_overrides(folder, multirun)
    return [*flags, *overrides, f"{key}={_quote(str(folder))}"]


def split_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides) of a command line, in their order, as
    Hydra's own parser reads it: `--config-name study -m seed=1` has the flags
    `--config-name study -m` (a value is not an override)."""
    try:
        args, extras = get_args_parser().parse_known_args(list(argv))
    except SystemExit:  # a flag Hydra refuses: it says so itself when the command runs
        return [a for a in argv if a.startswith("-")], [a for a in argv if not a.startswith("-")]
    # argparse takes the overrides before a flag as its positional list and leaves those after
    # it over: both are overrides, in the order given
    pending = [list(args.overrides), [e for e in extras if not e.startswith("-")]]
    flags, overrides = [], []
    for a in argv:
        queue = next((q for q in pending if q and q[0] == a), None)
        if queue is not None:
            overrides.append(queue.pop(0))
        else:
            flags.append(a)
    return flags, overrides
