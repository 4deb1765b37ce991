"""Parallel coordinates: one axis per varied config key and one for the final metric, one line
per run colored by that metric (a static PNG, so the report stays offline and self-contained)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize

from experiments.analysis.analyse import Analysis
from experiments.analysis.style import PlotSpec, fmt, ordered_levels, spans_decades, suptitle

MAX_TICKS = 8  # level labels shown on a categorical axis


def _axis(values: pd.Series) -> tuple[np.ndarray, list[float], list[str]]:
    """Positions in [0, 1] for one axis, with its tick positions and labels.

    Numbers spread linearly (log when they span decades); anything else is categorical, its
    levels evenly spaced in their natural order."""
    num = pd.to_numeric(values, errors="coerce")
    is_num = num.notna().all() and not values.map(lambda v: isinstance(v, bool)).any()
    if is_num and num.nunique() > 1:
        v = num.to_numpy(dtype=float)
        log = bool(spans_decades(num, 20.0)) and (v > 0).all()  # lr 1e-3..1e-1: log
        t = np.log10(v) if log else v
        lo, hi = float(t.min()), float(t.max())
        pos = (t - lo) / (hi - lo)
        ticks = sorted(set(v))[:: max(1, len(set(v)) // MAX_TICKS)]
        tpos = [((np.log10(x) if log else x) - lo) / (hi - lo) for x in ticks]
        return pos, tpos, [f"{x:g}" for x in ticks]
    labels = values.map(fmt)
    levels = ordered_levels(values)
    if len(levels) == 1:
        return np.full(len(values), 0.5), [0.5], levels
    where = {lab: i / (len(levels) - 1) for i, lab in enumerate(levels)}
    shown = levels[:: max(1, len(levels) // MAX_TICKS)]
    return labels.map(where).to_numpy(dtype=float), [where[s] for s in shown], shown


def parallel_coordinates(a: Analysis, spec: PlotSpec) -> Path | None:
    """parallel_coordinates.png: the varied keys and the final metric, one line per run."""
    value = f"final_{spec.metric}"
    keys = [k for k in a.fx.factors if k in a.table]
    if a.fx.seed and a.fx.seed in a.table and a.table[a.fx.seed].nunique() > 1:
        keys.append(a.fx.seed)
    runs = a.table[a.table[value].notna()]
    if not keys or len(runs) < 2:
        return None
    axes = [_axis(runs[k]) for k in keys]
    metric = runs[value].to_numpy(dtype=float)
    m_pos, m_ticks, m_labels = _axis(runs[value])
    cols = np.column_stack([p for p, _, _ in axes] + [m_pos])
    n_axes = cols.shape[1]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * n_axes + 1.5), 4.8), layout="constrained")
    norm = Normalize(float(np.nanmin(metric)), float(np.nanmax(metric)))
    cmap = colormaps["viridis" if spec.hib else "viridis_r"]
    order = np.argsort(metric if spec.hib else -metric)  # the best runs drawn last, on top
    x = np.arange(n_axes)
    for i in order:
        ax.plot(x, cols[i], color=cmap(norm(metric[i])), lw=1.2, alpha=0.8)
    for j, (_, tpos, tlab) in enumerate([*axes, (None, m_ticks, m_labels)]):
        ax.axvline(j, color="0.3", lw=0.8)
        for p, lab in zip(tpos, tlab, strict=True):
            ax.text(j + 0.04, p, lab, fontsize=7, va="center", ha="left", color="0.15")
    ax.set_xticks(x, [*keys, f"final {spec.metric}"], rotation=0)
    ax.set_yticks([])
    ax.set_xlim(-0.15, n_axes - 0.6)
    ax.set_ylim(-0.05, 1.05)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01,
                 label=f"final {spec.metric}")
    best = "higher" if spec.hib else "lower"
    suptitle(fig, f"parallel coordinates: the varied keys and final {spec.metric}\n"
                  f"one line per run ({len(runs)} runs; color = final {spec.metric}, {best} is "
                  "better)")
    return spec.save(fig, "parallel_coordinates")
