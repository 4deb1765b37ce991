"""One run's learning curves, drawn into its run dir with compare's look: curves_loss.png and
curves_<metric>.png (val solid, train dashed, log y when the values span decades)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from experiments import record
from experiments.analysis.style import STYLES, fit_y, suptitle
from experiments.record import METRICS

COLOR = "tab:blue"
DPI = 100
# task -> the panels of its metric figure: (ylabel, columns; first solid, next dashed). A column
# the run did not log (no val split: val_frac=0) is left out.
PANELS = {
    "classification": [("accuracy", ["val_acc", "train_acc"])],
    "regression": [("MSE", ["val_mse", "train_mse"]), ("R²", ["val_r2"])],
}


def _status_note(status: str, last: int, epochs: int | None) -> str:
    """How the run ended, for the title: '20 epochs', 'diverged at epoch 7', ..."""
    of = f" of {epochs}" if epochs else ""
    if status == "completed":
        return f"completed {last} epochs"
    if status == "diverged":
        return f"diverged at epoch {last} (marked)"
    return f"{status} after epoch {last}{of}"


def _figure(metrics: pd.DataFrame, panels: list[tuple[str, list[str]]], title: str,
            diverged_at: int | None) -> tuple[plt.Figure, dict[str, int]]:
    """One panel per (ylabel, columns); returns the figure and the points drawn per column."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.4, 3.4),
                             squeeze=False, layout="constrained")
    drawn: dict[str, int] = {}
    for ax, (ylabel, cols) in zip(axes[0], panels, strict=True):
        values = []
        for c, style in zip(cols, STYLES, strict=False):
            if c not in metrics:
                continue
            line = metrics[["epoch", c]].replace([np.inf, -np.inf], np.nan).dropna()
            ax.plot(line["epoch"], line[c], ls=style, color=COLOR, lw=1.6, label=c,
                    marker="o" if len(line) == 1 else None)
            values.append(line[c].to_numpy())
            drawn[c] = len(line)
        if diverged_at is not None:
            ax.axvline(diverged_at, color="tab:red", ls=":", lw=1.4, label="diverged")
        fit_y(ax, values)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    suptitle(fig, title)
    return fig, drawn


def draw_run(run_dir: str | Path, status: str, label: str, epochs: int | None = None,
             metrics_file: str = METRICS) -> list[Path]:
    """Draw curves_loss.png and curves_<metric>.png from run_dir's metrics.csv (<metric> is the
    task's primary metric, or its train twin when the run has no val split).

    `status` is how the run ended, `label` what it was (the title's first line), `epochs` how
    many it was asked for. A diverged run is drawn up to its last finite value with the
    divergence epoch marked; an interrupted or failed one up to its last epoch. Each PNG
    records the points it drew per column in its Description text chunk. Returns the PNGs
    written (none when metrics.csv has no row).
    """
    run_dir = Path(run_dir)
    metrics = pd.read_csv(run_dir / metrics_file)
    if metrics.empty:
        return []
    last = int(metrics["epoch"].iloc[-1])
    task = "classification" if "train_acc" in metrics else "regression"
    metric, panels = record.primary_metric(task), PANELS[task]
    if metric not in metrics:  # no val split (val_frac=0): the figure shows, and is named by, train
        metric = metric.replace("val_", "train_", 1)
    note = _status_note(status, last, epochs)
    diverged_at = last if status == "diverged" else None
    written = []
    for name, figure_panels, what in [
        ("curves_loss", [("loss", ["val_loss", "train_loss"])], "loss"),
        (f"curves_{metric}", panels, " and ".join(p[0] for p in panels)),
    ]:
        title = f"{label}\n{what} per epoch, {note}"
        fig, drawn = _figure(metrics, figure_panels, title, diverged_at)
        path = run_dir / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1,
                    metadata={"Description": json.dumps({"points": drawn, "status": status,
                                                            "diverged_at": diverged_at})})
        plt.close(fig)
        written.append(path)
    return written
