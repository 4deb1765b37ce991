"""The run-record contract: a run dir's files, a run's statuses, its CSV columns, its primary metric.

The harness writes run dirs by these names; analysis, bench, export and tests read them from here.
The metric and layer columns are defined by the library (`mlp_core.train`, which produces the
rows) and re-exported here, so the record has one home above the library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mlp_core.columns import BASE_COLUMNS, LAYER_COLUMNS, TASK_COLUMNS, metric_columns

__all__ = [
    "BASE_COLUMNS", "LAYER_COLUMNS", "TASK_COLUMNS", "metric_columns",
    "METRICS", "LAYERS", "SUMMARY", "CHECKPOINT", "LOG", "CONFIG", "OVERRIDES", "LOCK", "ENV",
    "GIT_PATCH", "LABELS", "LAUNCH",
    "RUNNING", "COMPLETED", "DIVERGED", "FAILED", "INTERRUPTED", "REFUSED", "BUSY", "NOT_STARTED",
    "STATUSES",
    "FINISHED", "BAD", "INT_COLUMNS", "TASKS", "PRIMARY", "TRACKED",
    "higher_is_better", "primary_metric", "metric_for_columns",
]

# ---------------------------------------------------------------- files of one run dir
METRICS = "metrics.csv"        # one row per epoch (epoch 0 = at initialization), flushed each epoch
LAYERS = "layers.csv"          # one row per layer per epoch
SUMMARY = "summary.json"       # status, final/best/test metrics, timings, versions (atomic)
CHECKPOINT = "checkpoint.pt"   # the latest trainer state, for resuming
LOG = "run.log"                # the run's log
CONFIG = "config.yaml"         # the composed config the run was started with (written once)
OVERRIDES = "overrides.yaml"   # the command-line overrides of that run, a YAML list (written once)
LOCK = ".lock"                 # OS lock (flock) held by the process training the run; pid inside
ENV = "env.json"               # packages (pip freeze), host, CPU, torch threads, CUDA, git commit
LAUNCH = ".launch"             # <sweep>/.launch/<id>/launch.json: a launch in progress (removed at its end)
GIT_PATCH = "git.patch"        # `git diff HEAD` of the code that ran, only when the tree was dirty

# ---------------------------------------------------------------- labels (config.yaml)
LABELS = ("name", "notes", "tags")  # config keys that label a run: shown, never a factor,
                                    # never part of its identity (harness.schema.FREE_KEYS + name)

# ---------------------------------------------------------------- statuses (summary.json)
RUNNING = "running"            # started; a kill leaves it so (resumable from the checkpoint)
COMPLETED = "completed"        # trained every epoch
DIVERGED = "diverged"          # stopped early: a loss was non-finite or exploded
FAILED = "failed"              # raised (bad data, failed gradient check, ...): error says why
INTERRUPTED = "interrupted"    # stopped on purpose (a signal) before its last epoch
REFUSED = "refused"            # not started: the run dir holds another run (reported, not written)
BUSY = "busy"                  # not started: another process holds the run dir (reported)
NOT_STARTED = "not started"    # not started: a stop (SIGINT/SIGTERM) came first (reported)
STATUSES = (RUNNING, COMPLETED, DIVERGED, INTERRUPTED, FAILED, REFUSED, BUSY, NOT_STARTED)
FINISHED = (COMPLETED, DIVERGED)  # results are final: a re-launch skips the run
BAD = (FAILED, REFUSED)           # a launch with one of these exits non-zero

# ---------------------------------------------------------------- columns
TASKS = tuple(TASK_COLUMNS)    # classification, regression
INT_COLUMNS = ("epoch", "step", "layer")  # integer-valued CSV columns; the rest are floats/names

# ---------------------------------------------------------------- what "better" means
PRIMARY = {"classification": "val_acc", "regression": "val_mse"}  # ranks runs, Optuna's objective
TRACKED = {  # task -> metrics recorded as best_<metric> in summary.json; the primary first
    "classification": ("val_acc", "val_loss"),
    "regression": ("val_mse", "val_r2", "val_loss"),
}
_HIGHER = re.compile(r"(acc|r2|samples_per_s)$")


def higher_is_better(metric: str) -> bool:
    """Accuracy, R² and throughput: higher wins. Losses, MSE, norms, times: lower wins."""
    return bool(_HIGHER.search(metric))


def primary_metric(task: str) -> str:
    """The metric that ranks runs of a task (val_acc for classification, val_mse for regression)."""
    if task not in PRIMARY:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(PRIMARY)}")
    return PRIMARY[task]


def metric_for_columns(columns: Iterable[str]) -> str:
    """The primary metric among metrics.csv columns: val_acc, else val_mse, else val_loss."""
    cols = set(columns)
    for m in (*PRIMARY.values(), "val_loss"):
        if m in cols:
            return m
    raise ValueError(f"{METRICS} has none of {', '.join((*PRIMARY.values(), 'val_loss'))}")
