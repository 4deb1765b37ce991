"""The columns of metrics.csv and layers.csv (no torch import: compare reads them too)."""

from __future__ import annotations

PERCENTILES = (15, 50, 85)  # of the pre-activation, as in Ioffe & Szegedy (2015), Fig. 1b-c
PRE_COLUMNS = [f"{who}pre_p{p}" for who in ("", "unit0_") for p in PERCENTILES]
BASE_COLUMNS = ["epoch", "step", "lr", "train_loss", "val_loss", "grad_norm", "weight_norm",
                "epoch_time_s", "samples_per_s"]
TASK_COLUMNS = {"classification": ["train_acc", "val_acc"],
                "regression": ["train_mse", "val_mse", "val_r2"]}
LAYER_COLUMNS = ["epoch", "layer", "name", "act_mean", "act_std", "dead_or_saturated_frac",
                 "grad_norm", "weight_norm", "update_ratio", *PRE_COLUMNS]


def metric_columns(task: str, val: bool = True) -> list[str]:
    """The metrics.csv columns for a task, in order; without a val split (val=False) no val_*."""
    if task not in TASK_COLUMNS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASK_COLUMNS)}")
    return [c for c in BASE_COLUMNS + TASK_COLUMNS[task] if val or not c.startswith("val_")]
