"""The figures the papers drew: Ioffe & Szegedy (2015) Fig. 1 and Glorot & Bengio (2010) Fig. 2.

Both show single runs, never an average across levels: each configuration (one level of
every varied factor) gets its own panel, drawn from its lowest-seed run that has layers.csv.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.lines import Line2D

from experiments.analysis.analyse import Analysis
from experiments.analysis.style import MAX_LAYER_COLUMNS, PlotSpec, fmt, legend, suptitle, wrap
from mlp_core.columns import PERCENTILES


def configurations(a: Analysis) -> pd.DataFrame:
    """One row per configuration with layers logged: its label, its lowest-seed run and the
    run ids of every seed. Empty when there are more than MAX_LAYER_COLUMNS configurations."""
    runs = a.runs[a.runs.index.isin(a.rs.layers["run_id"].unique())]
    if runs.empty:
        return pd.DataFrame(columns=["label", "run_id", "run_ids"])
    factors = [f for f in a.fx.factors if f in runs]
    label = (runs[factors].apply(lambda r: ", ".join(f"{k}={fmt(v)}" for k, v in r.items()),
                                 axis=1) if factors else pd.Series("all runs", index=runs.index))
    seed = a.fx.seed if a.fx.seed in runs else None
    rows = []
    for lab, grp in runs.groupby(label, sort=False):
        first = grp.sort_values(seed).index[0] if seed else grp.index[0]
        rows.append({"label": lab, "run_id": first, "run_ids": list(grp.index),
                     "seed": grp.loc[first, seed] if seed else None})
    out = pd.DataFrame(rows)
    return out if len(out) <= MAX_LAYER_COLUMNS else out.iloc[0:0]


def _steps(a: Analysis, run_id: int) -> pd.Series:
    """epoch -> optimizer step of one run."""
    m = a.rs.metrics[a.rs.metrics["run_id"] == run_id]
    return m.set_index("epoch")["step"]


def _last_hidden(a: Analysis, run_id: int) -> pd.DataFrame:
    """layers.csv rows of the run's last hidden layer (the output layer is the last index)."""
    lay = a.rs.layers[a.rs.layers["run_id"] == run_id]
    if lay.empty or lay["layer"].max() < 1:
        return lay.iloc[0:0]
    return lay[lay["layer"] == lay["layer"].max() - 1].sort_values("epoch")


def percentile_bands(a: Analysis, spec: PlotSpec) -> Path | None:
    """pre_activation_percentiles.png, Ioffe & Szegedy's Fig. 1: (a) the ranking metric
    against steps per configuration (mean over seeds, thin lines per seed); then one panel per
    configuration with the 15th/50th/85th percentiles of the last hidden layer's input over
    training: unit 0 (solid, the paper's "typical unit") and pooled over units (dashed)."""
    if "pre_p50" not in a.rs.layers or a.metric not in a.rs.metrics:
        return None
    confs = configurations(a)
    confs = confs[[not _last_hidden(a, r).empty for r in confs["run_id"]]]
    if confs.empty:
        return None
    n = len(confs)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.4 * (n + 1), 3.6), squeeze=False,
                             layout="constrained")
    ax0 = axes[0, 0]
    colors = plt.get_cmap("tab10")
    for i, c in enumerate(confs.itertuples()):
        m = a.rs.metrics[a.rs.metrics["run_id"].isin(c.run_ids)]
        for _, one in m.groupby("run_id"):
            ax0.plot(one["step"], one[a.metric], color=colors(i), lw=0.5, alpha=0.4)
        mean = m.groupby("epoch")[[a.metric, "step"]].mean()
        ax0.plot(mean["step"], mean[a.metric], color=colors(i), lw=1.8,
                 label=f"{c.label} ({len(c.run_ids)} runs)")
    ax0.set_xlabel("step")
    ax0.set_ylabel(a.metric)
    ax0.set_title("(a) mean over seeds", fontsize="medium")
    ax0.grid(alpha=0.3)
    for j, c in enumerate(confs.itertuples(), start=1):
        ax = axes[0, j]
        lay = _last_hidden(a, c.run_id)
        steps = lay["epoch"].map(_steps(a, c.run_id))
        ax.fill_between(steps, lay["unit0_pre_p15"], lay["unit0_pre_p85"], color=colors(j - 1),
                        alpha=0.15, lw=0)
        for p in PERCENTILES:
            ax.plot(steps, lay[f"unit0_pre_p{p}"], color=colors(j - 1), lw=1.6)
            ax.plot(steps, lay[f"pre_p{p}"], color="0.35", lw=0.9, ls="--")
        seed = "" if c.seed is None else f", seed {fmt(c.seed)}"
        layer = int(lay["layer"].iloc[0])
        ax.set_title(wrap(f"({chr(97 + j)}) {c.label}{seed}: fc{layer} input", 2.6),
                     fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0, 1].set_ylabel("pre-activation percentiles\n(15th, 50th, 85th)")
    handles = [Line2D([], [], color="k", lw=1.6, label="unit 0"),
               Line2D([], [], color="0.35", lw=0.9, ls="--", label="pooled over units")]
    legend(fig, ax0.get_legend_handles_labels()[0] + handles, None)
    suptitle(fig, "Ioffe & Szegedy (2015) Fig. 1: accuracy against steps, and the input "
                  "distribution of the last hidden layer's units over training, one run per "
                  "configuration (probe batch, train-mode BN)")
    return spec.save(fig, "pre_activation_percentiles")


def layer_activation_bands(a: Analysis, spec: PlotSpec) -> Path | None:
    """layer_activation_bands.png, Glorot & Bengio's Fig. 2: per hidden layer, the mean
    activation (line) with a +-1 std band (over units and probe samples) against epoch, one
    panel per configuration, one run each."""
    confs = configurations(a)
    if confs.empty:
        return None
    layers = {r: a.rs.layers[a.rs.layers["run_id"] == r] for r in confs["run_id"]}
    n_hidden = max(int(lay["layer"].max()) for lay in layers.values())  # output layer excluded
    if n_hidden < 1:
        return None
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n_hidden)))
    norm = BoundaryNorm(np.arange(-0.5, n_hidden), n_hidden)
    n = len(confs)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n + 1.6, 3.8), sharey=True, squeeze=False,
                             layout="constrained")
    for j, c in enumerate(confs.itertuples()):
        ax, lay = axes[0, j], layers[c.run_id]
        for layer in range(int(lay["layer"].max())):  # hidden layers only
            r = lay[lay["layer"] == layer].sort_values("epoch")
            col = cmap(norm(layer))
            lo, hi = r["act_mean"] - r["act_std"], r["act_mean"] + r["act_std"]
            ax.fill_between(r["epoch"], lo, hi, color=col, alpha=0.12, lw=0)
            for edge in (lo, hi):
                ax.plot(r["epoch"], edge, color=col, lw=0.5, alpha=0.7)
            ax.plot(r["epoch"], r["act_mean"], color=col, lw=1.5)
        seed = "" if c.seed is None else f", seed {fmt(c.seed)}"
        ax.set_title(wrap(f"{c.label}{seed}", 3.5), fontsize="medium")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("activation: mean +- std")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9,
                 ticks=range(n_hidden), label="hidden layer (0 = first)")
    suptitle(fig, "Glorot & Bengio (2010) Fig. 2: mean activation and its std (band) per hidden "
                  "layer over training, one run per configuration, never averaged")
    return spec.save(fig, "layer_activation_bands")
