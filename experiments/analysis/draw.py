"""The draw step of compare: every figure of an Analysis, one PNG each, in a fixed order.

A figure is a function `(analysis, spec) -> Path | list[Path] | None` that saves through
`spec.save` (which records the file); register a new one by adding it to FIGURES.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from experiments.analysis import paper_figures, parallel, plots, style
from experiments.analysis.analyse import Analysis

Figure = Callable[[Analysis, style.PlotSpec], "Path | list[Path] | None"]

FIGURES: list[Figure] = [
    plots.metric_curves,        # curves_<metric>.png
    plots.loss_curves,          # curves_loss.png
    plots.final_by_factor,      # final_by_factor.png
    plots.heatmaps,             # heatmap_<a>__<b>.png
    plots.signal_propagation,   # signal_propagation.png
    plots.layers_over_epochs,   # layers_over_epochs.png
    plots.walltime,             # walltime.png
    parallel.parallel_coordinates,  # parallel_coordinates.png
    paper_figures.percentile_bands,        # pre_activation_percentiles.png (Ioffe Fig. 1)
    paper_figures.layer_activation_bands,  # layer_activation_bands.png (Glorot Fig. 2)
]


def _seeds(a: Analysis) -> str:
    """"3 seeds": the seeds among completed runs."""
    done = a.table[a.table["status"] == "completed"]
    seed = a.fx.seed
    n_seeds = done[seed].nunique() if seed and seed in done else 1
    return f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"


def plot_spec(a: Analysis, out: Path) -> style.PlotSpec:
    """What every figure of this analysis shares: grouping, fixed level colors, out dir."""
    keys = list(dict.fromkeys([*a.fx.factors, *(k for k in (a.by, a.facet) if k)]))
    others = [f for f in a.fx.factors if f not in (a.by, a.facet)]
    seeds = _seeds(a)
    return style.PlotSpec(
        metric=a.metric, hib=a.hib, by=a.by, facet=a.facet, factors=a.fx.factors, out=out,
        palette={k: style.make_palette(a.runs[k]) for k in keys},
        levels={k: style.ordered_levels(a.runs[k]) for k in keys},
        replicates=seeds + (f", averaged over {', '.join(others)}" if others else ""),
        seeds=seeds)


def draw(a: Analysis, out: Path, figures: list[Figure] | None = None) -> list[Path]:
    """Draw every figure of FIGURES (or `figures`) into out; returns the PNGs written."""
    spec = plot_spec(a, out)
    for figure in FIGURES if figures is None else figures:
        figure(a, spec)
    return list(spec.written)
