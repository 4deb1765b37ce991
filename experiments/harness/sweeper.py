"""Hydra's basic sweeper without the second composition of every job it does before launching."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


def _already_validated(self: BasicSweeper, batch: Sequence[Sequence[str]]) -> None:
    """run.py's preflight composed and validated every job of this batch before Hydra started."""


@contextlib.contextmanager
def preflighted() -> Iterator[None]:
    """While the block runs, Hydra's basic sweeper launches each batch without composing every
    job's config once more to catch composition errors early (run.py's preflight has composed
    and validated each job): that pass was a third of a sweep's compositions, ~0.1 s each.
    Hydra only accepts sweepers from its plugin namespace, hence a patch, not a subclass; other
    sweepers (Optuna) are not touched."""
    own = BasicSweeper.__dict__.get("validate_batch_is_legal")  # None: inherited from Sweeper
    BasicSweeper.validate_batch_is_legal = _already_validated  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del BasicSweeper.validate_batch_is_legal
        else:
            BasicSweeper.validate_batch_is_legal = own  # type: ignore[method-assign]
