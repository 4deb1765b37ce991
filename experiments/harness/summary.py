"""summary.json contents: versions, best/final metrics from the rows, the Optuna objective."""

from __future__ import annotations

import functools
import math
import platform
import subprocess
from importlib import metadata
from typing import Any

from experiments import record
from experiments.paths import REPO


@functools.cache  # once per process: the code and libraries of a sweep's process do not change
def _versions() -> dict[str, str]:
    """Versions of Python, the libraries, and the git commit of the code that ran."""
    out = {"python": platform.python_version()}
    for dist in ("mlp-core", "torch", "numpy", "scikit-learn", "hydra-core", "omegaconf"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=5).stdout
        out["git"] = (commit + ("+dirty" if dirty.strip() else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def versions() -> dict[str, str]:
    """Versions of Python, the libraries, and the git commit of the code that ran (a copy)."""
    return dict(_versions())


def scalar(v: Any) -> Any:
    """A Python number from a tensor/numpy scalar; other values unchanged."""
    if hasattr(v, "item"):
        return v.item()
    return v


def parse_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row back into numbers (floats round-trip exactly through their repr)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in record.INT_COLUMNS:
            out[k] = int(v)
        else:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def best_metrics(rows: list[dict[str, Any]], task: str | None) -> dict[str, Any]:
    """best_<metric> over the epochs (non-finite values ignored) and the primary best_epoch."""
    out: dict[str, Any] = {}
    for i, metric in enumerate(record.TRACKED.get(task or "", ())):
        vals = [(r[metric], r["epoch"]) for r in rows
                if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
        if not vals:
            out[f"best_{metric}"] = None
            continue
        pick = max(vals, key=lambda t: (t[0], -t[1])) if record.higher_is_better(metric) \
            else min(vals, key=lambda t: (t[0], t[1]))
        out[f"best_{metric}"] = pick[0]
        if i == 0:
            out["best_epoch"] = pick[1]
    return out


def objective(summary: dict[str, Any]) -> float:
    """What an Optuna sweep optimizes: best val_acc (classification) or best val_mse
    (regression); nan for a failed run, which Optuna records as a failed trial."""
    if summary.get("status") not in record.FINISHED:
        return math.nan
    metric = record.PRIMARY.get(summary.get("task") or "", "")
    value = (summary.get("best") or {}).get(f"best_{metric}")
    return float(value) if value is not None else math.nan
