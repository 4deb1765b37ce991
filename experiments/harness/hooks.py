"""Epoch hooks: code that wants each epoch as it is written (`+logger=...`) registers here.

The recorder calls every hook after an epoch's writes with the run dir and that epoch's metrics
row; a hook that raises is dropped with a warning, never failing the run. The harness itself
registers none: `experiments.trackers.live` does, and only when a `+logger=` asks for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

EpochHook = Callable[[Path, dict[str, Any]], None]
EPOCH_HOOKS: list[EpochHook] = []
log = logging.getLogger("harness.hooks")


def call_epoch_hooks(run_dir: Path, row: dict[str, Any]) -> None:
    """Give the epoch's row to every hook; a failing hook is removed, the run goes on."""
    for hook in list(EPOCH_HOOKS):
        try:
            hook(run_dir, row)
        except Exception as e:
            log.warning("epoch hook %s dropped: %s: %s", getattr(hook, "__qualname__", hook),
                        type(e).__name__, e)
            EPOCH_HOOKS.remove(hook)
