"""Hydra's basic sweeper without the second composition of every job it does before launching."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from hydra.plugins.sweeper import Sweeper

_VALIDATE = Sweeper.validate_batch_is_legal


def _validate(self: Sweeper, batch: Sequence[Sequence[str]]) -> None:
    """The basic sweeper's batches were composed and validated by run.py's preflight; any other
    sweeper (Optuna: trials the preflight cannot know) is validated as Hydra does."""
    if type(self).__name__ != "BasicSweeper":
        _VALIDATE(self, batch)


@contextlib.contextmanager
def preflighted() -> Iterator[None]:
    """While the block runs, Hydra's basic sweeper launches each batch without composing every
    job's config once more to catch composition errors early: run.py's preflight has composed
    and validated each job. The patch is on the `Sweeper` base class: Hydra's plugin scan
    re-executes `basic_sweeper.py`, so a patch on the `BasicSweeper` class imported here would
    miss the class Hydra instantiates (`tests/test_compose_cache.py`)."""
    Sweeper.validate_batch_is_legal = _validate  # type: ignore[method-assign]
    try:
        yield
    finally:
        Sweeper.validate_batch_is_legal = _VALIDATE  # type: ignore[method-assign]
