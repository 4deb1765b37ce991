"""Per-run logging: a run.log file handler, one concise line per epoch, an optional tqdm bar."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("harness")

FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


@contextlib.contextmanager
def log_to_file(path: Path, *extra: logging.Logger) -> Iterator[None]:
    """Send every log record (and those of the non-propagating `extra` loggers) to `path`,
    appending, while the block runs; then detach."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FILE_FORMAT, "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    old_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    for lg in (root, *extra):
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg in (root, *extra):
            lg.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def epoch_line(m: dict[str, Any], epochs: int, prefix: str = "") -> str:
    """`[run 2 of 4] epoch 3/20 train_loss 0.512 val_loss 0.533 val_acc 0.81 lr 0.01 0.12s`."""
    shown = ["train_loss", "val_loss", "val_acc" if "train_acc" in m else "val_mse"]
    parts = [f"epoch {m['epoch']}/{epochs}"]
    parts += [f"{k} {_fmt(m[k])}" for k in shown if k in m]  # no val_* without a val split
    parts += [f"lr {_fmt(m['lr'])}", f"{m['epoch_time_s']:.2f}s"]
    return (f"[{prefix}] " if prefix else "") + " ".join(parts)


@contextlib.contextmanager
def progress(total: int, initial: int, desc: str, enabled: bool) -> Iterator[tqdm | None]:
    """A tqdm bar over epochs on stderr when `enabled` and stderr is a terminal, else None.

    While the bar is shown, console log lines are printed above it (logging_redirect_tqdm).
    """
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    with logging_redirect_tqdm(), tqdm(total=total, initial=initial, desc=desc, unit="epoch",
                                       leave=False, file=sys.stderr) as bar:
        yield bar
