"""What one run writes while it trains: summary.json, metrics.csv and layers.csv, the checkpoint."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from experiments import record
from experiments.harness.hooks import call_epoch_hooks
from experiments.harness.phases import Phases
from experiments.harness.rundir import (
    SAVE_EVERY_S,
    CsvLog,
    DiskFull,
    RunDir,
    atomic_torch_save,
    atomic_write_json,
    check_checkpoint,
    read_csv,
    truncate_csv,
)
from experiments.harness.summary import best_metrics, parse_row, scalar, versions
from mlp_core.train import EpochRecord, Trainer


class Recorder:
    """The run record of one launch of a run, kept on disk after every change.

    `begin` starts (or continues) the record, `epoch` logs one EpochRecord, `end` or `fail` sets
    the outcome and `close` writes the final summary; use it as a context manager.
    """

    def __init__(self, rd: RunDir, summary: dict[str, Any], wall_before: float = 0.0) -> None:
        self.rd, self.summary = rd, summary
        self.rows: list[dict[str, Any]] = []  # metrics rows so far, resumed ones included
        self._logs: list[CsvLog] = []
        self._t0, self._wall_before = time.perf_counter(), wall_before
        self.phases = Phases()  # where this launch's wall time goes: summary["phases_s"]
        self._saved_at, self._unsaved = -math.inf, False  # the last checkpoint's time; newer rows
        self._state: Callable[[], dict[str, Any]] | None = None

    @classmethod
    def begin(cls, rd: RunDir, config: dict[str, Any], overrides: list[str], *, resume: bool
              ) -> Recorder:
        """A fresh record (config and overrides written once), or the continued one on resume:
        its progress (epochs, final/best/test, wall time) and its thread count carried over
        before anything else is written, so a kill right after "resume ->" loses nothing."""
        prev = (rd.read_json(rd.summary) or {}) if resume else {}
        if not resume:
            rd.start_fresh(config, overrides)
        summary: dict[str, Any] = {
            "status": record.RUNNING, "task": prev.get("task"),
            "dataset": config["data"]["name"], "final": {}, "best": {}, "test": {},
            "epochs_completed": 0, "wall_time_s": 0.0, "n_params": None,
            "gradcheck_max_rel_err": prev.get("gradcheck_max_rel_err"), "error": None,
            "resumes": prev.get("resumes", -1) + 1 if resume else 0,
            "threads": prev.get("threads") if isinstance(prev.get("threads"), int) else None,
            "versions": versions(),
        }
        summary.update({k: prev[k] for k in ("task", "n_params", "final", "best", "test",
                                             "epochs_completed", "wall_time_s") if k in prev})
        rec = cls(rd, summary, float(prev.get("wall_time_s") or 0.0))
        rec._write()
        return rec

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def note(self, **fields: Any) -> None:
        """Set summary fields known before training (task, n_params, gradcheck_max_rel_err)."""
        self.summary.update(fields)

    def timed(self, phase: str) -> contextlib.AbstractContextManager[None]:
        """Count the block's seconds under `phase` (data, gradcheck, eval, ...)."""
        return self.phases.timed(phase)

    def restore(self, trainer: Trainer, key: dict[str, Any], epochs: int) -> None:
        """Load the checkpoint into `trainer` (refused if it is ahead of `epochs` or of another
        config than `key`); drop CSV rows written after it (a kill can land between a row and
        its checkpoint) and cut a torn tail, with a warning naming the file."""
        # CPU first: RNG states must be CPU tensors; params and buffers are copied over.
        state = torch.load(self.rd.checkpoint, map_location="cpu", weights_only=True)
        check_checkpoint(state, key, epochs, self.rd.checkpoint)
        trainer.load_state_dict(state)
        truncate_csv(self.rd.metrics, trainer.epoch)
        truncate_csv(self.rd.layers, trainer.epoch)
        self.rows = [parse_row(r) for r in read_csv(self.rd.metrics)]

    def open_logs(self, metric_columns: list[str]) -> None:
        """Start appending to metrics.csv (these columns) and layers.csv."""
        self._logs = [CsvLog(self.rd.metrics, metric_columns),
                      CsvLog(self.rd.layers, record.LAYER_COLUMNS)]

    def epoch(self, rec: EpochRecord, state: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Log one epoch: its CSV rows, and the checkpoint `state()` with the summary after the
        first epoch, then every SAVE_EVERY_S and at the end (they were written every epoch:
        a resume replays the epochs since the checkpoint). Returns the row."""
        t_write = time.perf_counter()
        for name, seconds in rec.timing.items():  # the trainer's own phases: train, eval, layers
            self.phases.add(name.removesuffix("_s"), seconds)
        metrics = {k: scalar(v) for k, v in rec.metrics.items()}
        self._logs[0].write([metrics])
        self._logs[1].write([{k: scalar(v) for k, v in r.items()} for r in rec.layers])
        self.rows.append(metrics)
        self.summary.update(epochs_completed=metrics["epoch"], final=metrics,
                            wall_time_s=self._wall(), phases_s=self.phases.as_dict())
        self._state, self._unsaved = state, True
        if t_write - self._saved_at >= SAVE_EVERY_S or rec.status != record.RUNNING:
            self._checkpoint(t_write)
        self.phases.add("writes", time.perf_counter() - t_write)
        call_epoch_hooks(self.rd.path, metrics)  # +logger=...: live tracking (none by default)
        return metrics

    def _checkpoint(self, now: float) -> None:
        """The latest epoch's state to checkpoint.pt, then the summary that matches it."""
        if self._state is not None and self._unsaved:
            atomic_torch_save(self.rd.checkpoint, self._state())
            self._write()
            self._saved_at, self._unsaved = now, False

    def end(self, status: str, test: dict[str, Any]) -> None:
        """The trainer's final status and the test-split metrics."""
        self.summary.update(status=status, test={k: scalar(v) for k, v in test.items()})

    def interrupt(self, reason: str) -> None:
        """Stopped on request (a signal) after the epoch just logged: resumable from it."""
        with self.timed("writes"):
            self._checkpoint(time.perf_counter())
        self.summary.update(status=record.INTERRUPTED, error=reason)

    @property
    def interrupted(self) -> bool:
        return self.summary["status"] == record.INTERRUPTED

    def fail(self, error: str) -> None:
        self.summary.update(status=record.FAILED, error=error)

    def close(self) -> dict[str, Any]:
        """Close the logs; write the summary with best/final metrics over every row."""
        for f in self._logs:
            try:
                f.close()
            except DiskFull as e:  # its last rows could not be synced: the run failed
                self.fail(str(e))
        self._logs = []
        rows = self.rows
        self.summary.update(best=best_metrics(rows, self.summary["task"]),
                            final=rows[-1] if rows else {},
                            epochs_completed=rows[-1]["epoch"] if rows else 0,
                            wall_time_s=self._wall(), phases_s=self.phases.as_dict())
        self._write(durable=True)
        return self.summary

    def _wall(self) -> float:
        return self._wall_before + time.perf_counter() - self._t0

    def _write(self, durable: bool = False) -> None:
        # in place on a full disk: the failure record must land where no new block can be had
        atomic_write_json(self.rd.summary, self.summary, in_place_if_full=True, durable=durable)
