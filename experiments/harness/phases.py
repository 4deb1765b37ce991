"""Where a run's wall time goes: seconds per phase, summed, for summary.json's `phases_s`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

# data: dataset and model built; gradcheck; train: the steps; eval: train/val/test metrics;
# layers: per-layer statistics; writes: CSV rows, checkpoints, summary.json, log lines.
PHASES = ("data", "gradcheck", "train", "eval", "layers", "writes")


class Phases:
    """Accumulates seconds per phase; `timed(name)` is a context manager around one."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, float]:
        """{phase: seconds} rounded to 0.1 ms."""
        return {k: round(v, 4) for k, v in self.seconds.items()}
