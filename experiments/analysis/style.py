"""Shared look of the figures: level labels, one fixed color per factor level, legends, saving."""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.text import Text

matplotlib.use("Agg")  # files only, never a window

MAX_FACETS, MAX_HEATMAPS, MAX_STYLES, MAX_LAYER_COLUMNS = 12, 15, 4, 6
ARCH_KEYS = ("depth",)  # keys that change which layer an index names: per-layer plots split by them
STYLES, MARKERS = ["-", "--", ":", "-."], ["o", "s", "^", "D", "v", "P"]
TITLE_CHARS_PER_INCH = 11.0  # DejaVu Sans at 10 pt ("medium") averages ~6 pt a character
_TITLES: WeakKeyDictionary = WeakKeyDictionary()  # figure -> (its suptitle Text, unwrapped text)


def fmt(v: Any) -> str:
    """A level as the user typed it: true/false, 0.001, he, none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none"
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, float | np.floating):
        return f"{v:g}"
    return str(v)


def ordered_levels(s: pd.Series) -> list[str]:
    """Distinct levels of a column, numbers sorted numerically, then "none", as labels."""
    vals = [v for v in pd.unique(s) if not pd.isna(v)]
    try:
        vals = sorted(vals)
    except TypeError:
        vals = sorted(vals, key=str)
    return [fmt(v) for v in vals] + (["none"] if s.isna().any() else [])


def make_palette(s: pd.Series) -> dict[str, Any]:
    """label -> color: ordered levels of numbers on viridis, categories on tab10/tab20."""
    levels = ordered_levels(s)
    numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
    if numeric and len(levels) >= 3:
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(levels)))
    else:
        cmap = plt.get_cmap("tab10" if len(levels) <= 10 else "tab20")
        colors = [cmap(i % cmap.N) for i in range(len(levels))]
    return dict(zip(levels, colors, strict=True))


@dataclass
class PlotSpec:
    """What every figure shares: metric, grouping, the fixed level colors, where to write."""

    metric: str
    hib: bool
    by: str | None
    facet: str | None
    factors: list[str]
    palette: dict[str, dict[str, Any]]   # key -> label -> color
    levels: dict[str, list[str]]         # key -> ordered labels
    out: Path
    replicates: str = ""                 # "3 seeds, averaged over depth"
    seeds: str = ""                      # "3 seeds"
    dpi: int = 100
    written: list[Path] = field(default_factory=list)

    def labels(self, df: pd.DataFrame, key: str | None, none: str = "all runs") -> pd.Series:
        """The level label of every row of df for key (one label, `none`, when key is None)."""
        if key is None:
            return pd.Series(none, index=df.index, dtype=object)
        return df[key].map(fmt)

    def color(self, key: str | None, label: str) -> Any:
        return self.palette.get(key or "", {}).get(label, "tab:blue")

    def save(self, fig: plt.Figure, name: str) -> Path:
        path = self.out / (re.sub(r"[^\w.-]+", "_", name) + ".png")
        no_math(fig)
        fit_title(fig)
        # tight: whatever the layout could not fit (a long tick label, a wide legend) is
        # kept by growing the canvas, never clipped
        fig.savefig(path, dpi=self.dpi, bbox_inches="tight", pad_inches=0.1)
        plt.close(fig)
        self.written.append(path)
        return path


def plain(label: str) -> str:
    """A label shown as typed: "$" escaped so matplotlib does not read math text."""
    return str(label).replace("$", r"\$")


def no_math(fig: plt.Figure) -> None:
    """Show every text of the figure as typed (a level like "$x$" stays literal), except the
    tick labels, which matplotlib's formatters write as math text (10^3 on a log axis);
    category tick labels go through plain() where they are set. The texts are taken from
    where a figure keeps them (titles, axis labels, texts and annotations, legends), not by
    walking every artist: that walk made matplotlib compute every tick (~0.1 s a figure)."""
    texts: list[Text | None] = [*fig.texts, getattr(fig, "_suptitle", None),
                                getattr(fig, "_supxlabel", None), getattr(fig, "_supylabel", None)]
    legends = list(fig.legends)
    for ax in fig.axes:
        texts += [*ax.texts, ax.title, ax._left_title, ax._right_title,  # noqa: SLF001
                  ax.xaxis.label, ax.yaxis.label]
        legends += [leg for leg in (ax.get_legend(),) if leg is not None]
    for leg in legends:
        texts += [*leg.get_texts(), leg.get_title()]
    for t in texts:
        if t is not None:
            t.set_parse_math(False)


def wrap(text: str, width_in: float) -> str:
    """Each line of text wrapped to fit width_in inches at the title font size."""
    width = max(28, int(width_in * TITLE_CHARS_PER_INCH))
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False)
                     for line in text.split("\n"))


def suptitle(fig: plt.Figure, text: str) -> None:
    """The figure's title, wrapped to the figure's width (constrained layout makes room for
    every line, so nothing is cut at either end)."""
    title = fig.suptitle(wrap(text, 0.96 * fig.get_figwidth()), fontsize="medium")
    _TITLES[fig] = (title, text)


def fit_title(fig: plt.Figure) -> None:
    """If the title collides with a legend outside the axes (they share the top right corner),
    re-wrap it into the span left of the legend and center it there.

    Measured before the layout runs, with no draw pass (which cost ~1.4 s a figure): where the
    legend and the title lie across the figure does not depend on the layout (a figure legend
    is anchored to the figure's edge, the title centred on it; the layout moves the title a few
    pixels up, never sideways), and both hug the top edge, so overlapping across is colliding.
    """
    title, text = _TITLES.pop(fig, (None, ""))
    if title is None or not fig.legends:
        return
    renderer = fig.canvas.get_renderer()
    box = title.get_window_extent(renderer)
    legends = [leg.get_window_extent(renderer) for leg in fig.legends]
    if not any(box.x0 <= b.x1 and b.x0 <= box.x1 for b in legends):
        return
    right = min(b.x0 for b in legends)  # pixels from the figure's left edge
    title.set_text(wrap(text, 0.96 * right / fig.dpi))
    title.set_x(0.5 * right / fig.bbox.width)


def spans_decades(values: Any, ratio: float = 100.0) -> bool:
    """All positive and max/min above ratio: worth a log axis."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size) and v.min() > 0 and v.max() / v.min() > ratio


def fit_y(ax: plt.Axes, values: list[np.ndarray]) -> None:
    """The y axis of a curves figure: log when the lines span decades, else the lines' range
    with a margin (the lines decide it: a 2-seed CI band may be huge)."""
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    if spans_decades(v):
        ax.set_yscale("log")
    elif v.size:
        pad = 0.12 * (v.max() - v.min()) or 0.05 * abs(v.max()) or 0.1
        ax.set_ylim(v.min() - pad, v.max() + pad)


def legend(fig: plt.Figure, handles: list, title: str | None) -> None:
    """Legend outside the axes, to the right, never over data."""
    if handles:
        fig.legend(handles=handles, loc="outside right upper", title=title, fontsize="small")


def color_handles(spec: PlotSpec, key: str | None) -> list[Line2D]:
    """One legend entry per level of key, in its fixed color."""
    labels = spec.levels.get(key or "", ["all runs"])
    return [Line2D([], [], color=spec.color(key, lab), lw=2, label=lab) for lab in labels]
