"""The figures of a sweep, one PNG each: curves, final metric per factor, heatmaps, layers, time."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from experiments.analysis.aggregate import LAYER_TRACES, curve_stats, layer_curves, layer_profile, t_ci95
from experiments.analysis.analyse import Analysis
from experiments.analysis.style import (
    MARKERS,
    MAX_FACETS,
    MAX_HEATMAPS,
    MAX_LAYER_COLUMNS,
    MAX_STYLES,
    STYLES,
    PlotSpec,
    color_handles,
    fit_y,
    fmt,
    legend,
    spans_decades,
    suptitle,
    wrap,
)


def metric_curves(a: Analysis, spec: PlotSpec) -> Path | None:
    """curves_<metric>.png: the ranking metric per epoch (and its train_ twin, dashed)."""
    twin = a.metric.replace("val_", "train_", 1)
    cols = [a.metric] + ([twin] if twin != a.metric and twin in a.long else [])
    if a.metric not in a.long:
        return None
    return curves(spec, a.long, cols, f"curves_{a.metric}", " / ".join(cols))


def loss_curves(a: Analysis, spec: PlotSpec) -> Path | None:
    """curves_loss.png: val_loss (solid) and train_loss (dashed) per epoch, unless the
    ranking metric is itself a loss."""
    loss = [c for c in ("val_loss", "train_loss") if c in a.long]
    if not loss or a.metric in loss:
        return None
    return curves(spec, a.long, loss, "curves_loss", " / ".join(loss))


def curves(spec: PlotSpec, long: pd.DataFrame, cols: list[str], name: str,
           ylabel: str) -> Path | None:
    """Mean per epoch by `by` (color) for cols (first solid, with a 95% CI band; next dashed),
    one panel per `facet` level. None when no run completed."""
    if not long["status"].eq("completed").any():
        return None
    long = long.assign(_by=spec.labels(long, spec.by), _facet=spec.labels(long, spec.facet, "all"))
    keys = ["_by", "_facet"]
    stats = {c: curve_stats(long, keys, c) for c in cols}
    facets = spec.levels.get(spec.facet or "", ["all"])[:MAX_FACETS] if spec.facet else ["all"]
    ncols = min(len(facets), 3)
    nrows = math.ceil(len(facets) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols + 2.2, 3.0 * nrows + 0.9),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    values = []
    bounded = spec.metric.endswith("acc") and cols[0] == spec.metric  # accuracy lives in [0, 1]
    for ax, fl in zip(axes.flat, facets, strict=False):
        for c, style in zip(cols, STYLES, strict=False):
            st = stats[c]
            st = st[st["_facet"] == fl]
            for bl, line in st.groupby("_by", sort=False):
                color = spec.color(spec.by, bl)
                ax.plot(line["epoch"], line["mean"], ls=style, color=color, lw=1.6)
                values.append(line["mean"].to_numpy())
                if style == "-" and (line["n"] > 1).any():
                    lo, hi = line["mean"] - line["ci95"], line["mean"] + line["ci95"]
                    if bounded:
                        lo, hi = lo.clip(0, 1), hi.clip(0, 1)
                    ax.fill_between(line["epoch"], lo, hi, color=color, alpha=0.2, lw=0)
        if spec.facet:
            ax.set_title(wrap(f"{spec.facet} = {fl}", 3.6), fontsize="medium")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(facets):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    fit_y(axes[0, 0], values)
    handles = color_handles(spec, spec.by)
    if len(cols) > 1:
        handles += [Line2D([], [], color="gray", ls=s, label=c)
                    for c, s in zip(cols, STYLES, strict=False)]
    legend(fig, handles, spec.by)
    what = " and ".join(cols)
    panels = f", one panel per {spec.facet}" if spec.facet else ""
    suptitle(fig, f"{what} per epoch by {spec.by or 'run'}{panels}\n"
                  f"mean ± 95% CI over {spec.replicates} (completed runs)")
    return spec.save(fig, name)


def _level_stats(done: pd.DataFrame, key: str, value: str) -> pd.DataFrame:
    st = done.groupby(key, sort=False)[value].agg(["mean", "std", "count"])
    st["ci95"] = t_ci95(st["std"], st["count"])
    return st


def final_by_factor(a: Analysis, spec: PlotSpec) -> Path | None:
    """One panel per factor: final metric per level, mean ± 95% CI (marginal over the rest),
    single runs as gray dots."""
    table = a.table
    value = f"final_{spec.metric}"
    done = table[table["status"] == "completed"]
    if not spec.factors or done.empty:
        return None
    n = len(spec.factors)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.6 * ncols + 0.6, 6.0), 3.2 * nrows + 0.9),
                             squeeze=False, sharey=True, layout="constrained")
    rng = np.random.default_rng(0)
    for ax, f in zip(axes.flat, spec.factors, strict=False):
        labels = spec.levels[f]
        pos = {lab: i for i, lab in enumerate(labels)}
        lab_col = done[f].map(fmt)
        x = lab_col.map(pos).to_numpy(dtype=float)
        ax.scatter(x + rng.uniform(-0.15, 0.15, x.size), done[value], s=6, color="0.6",
                   alpha=0.5, lw=0, zorder=1)
        st = _level_stats(done.assign(_lab=lab_col), "_lab", value)
        for lab, row in st.iterrows():
            ax.errorbar(pos[lab], row["mean"], yerr=row["ci95"] if row["count"] > 1 else None,
                        fmt="o", ms=7, capsize=4, color=spec.color(f, lab), zorder=2)
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_xlabel(f)
        ax.grid(alpha=0.3, axis="y")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"final {spec.metric}")
    if spans_decades(done[value]):
        axes[0, 0].set_yscale("log")
    others = " and every level of the other factors" if n > 1 else ""
    suptitle(fig, f"final {spec.metric} per level of each factor: mean ± 95% CI over completed "
                  f"runs\n(each level pools {spec.seeds}{others}; gray dots: single runs)")
    return spec.save(fig, "final_by_factor")


def heatmaps(an: Analysis, spec: PlotSpec) -> list[Path]:
    """Mean final metric for each pair of factors, averaged over seeds and the other factors."""
    table = an.table
    value = f"final_{spec.metric}"
    done = table[table["status"] == "completed"]
    paths = []
    if done.empty:
        return paths
    for a, b in list(itertools.combinations(spec.factors, 2))[:MAX_HEATMAPS]:
        grid = (done.assign(_a=done[a].map(fmt), _b=done[b].map(fmt))
                .groupby(["_a", "_b"])[value].agg(["mean", "count"]))
        mean = grid["mean"].unstack("_b").reindex(index=spec.levels[a], columns=spec.levels[b])
        count = grid["count"].unstack("_b").reindex_like(mean)
        fig, ax = plt.subplots(figsize=(max(1.0 * len(mean.columns) + 3.2, 6.0),
                                        0.55 * len(mean.index) + 2.0), layout="constrained")
        logn = spans_decades(mean.to_numpy())
        norm = LogNorm() if logn else None
        im = ax.imshow(mean.to_numpy(dtype=float), cmap="viridis" if spec.hib else "viridis_r",
                       aspect="auto", norm=norm)
        if mean.size <= 150:
            for (i, j), v in np.ndenumerate(mean.to_numpy(dtype=float)):
                rgba = im.cmap(im.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
                dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                n = count.iat[i, j]
                txt = f"{v:.3g}\nn={int(n)}" if np.isfinite(v) else "no run\ncompleted"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(mean.columns)), mean.columns,
                      rotation=30 if len(mean.columns) > 4 else 0)
        ax.set_yticks(range(len(mean.index)), mean.index)
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        fig.colorbar(im, ax=ax, label=f"final {spec.metric} (mean)")
        better = "brighter is better"
        rest = " and the other factors" if len(spec.factors) > 2 else ""
        suptitle(fig, f"final {spec.metric}: {a} × {b} ({better})\nmean over completed runs "
                      f"(n per cell) of {spec.seeds}{rest}")
        paths.append(spec.save(fig, f"heatmap_{a}__{b}"))
    return paths


def signal_propagation(a: Analysis, spec: PlotSpec) -> Path | None:
    """Median activation std and weight-gradient norm per layer, at init and after training:
    color = `by` level, line style = `facet` level (when it has few levels). Log y."""
    rs = a.rs
    runs = a.runs.assign(_by=spec.labels(a.runs, spec.by),
                         _facet=spec.labels(a.runs, spec.facet, "all"))
    if rs.layers.empty or not runs.index.isin(rs.layers["run_id"]).any():
        return None
    use_facet = spec.facet is not None and len(spec.levels[spec.facet]) <= MAX_STYLES
    keys = ["_by"] + (["_facet"] if use_facet else [])
    prof = {w: layer_profile(rs, runs, keys, w) for w in ("init", "end")}
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 6.8), sharex=True, sharey="row",
                             squeeze=False, layout="constrained")
    styles = dict(zip(spec.levels[spec.facet], STYLES, strict=False)) if use_facet else {}
    for j, (when, title) in enumerate([("init", "at initialization (epoch 0, all runs)"),
                                       ("end", "after training (completed runs)")]):
        for i, stat in enumerate(["act_std", "grad_norm"]):
            ax = axes[i, j]
            for gkey, line in prof[when].groupby(keys, sort=False):
                gkey = gkey if isinstance(gkey, tuple) else (gkey,)
                y = line[stat].where(line[stat] > 0)
                ax.plot(line["layer"], y, color=spec.color(spec.by, gkey[0]),
                        ls=styles.get(gkey[1], "-") if use_facet else "-", marker=".", lw=1.4)
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            if i == 0:
                ax.set_title(title, fontsize="medium")
    axes[0, 0].set_ylabel("activation std (log)")
    axes[1, 0].set_ylabel("‖∂loss/∂W‖ (log)")
    for ax in axes[1]:
        ax.set_xlabel("layer index (0 = first hidden, last = output)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = color_handles(spec, spec.by)
    if use_facet:
        handles += [Line2D([], [], color="gray", ls=s, label=f"{spec.facet}={lab}")
                    for lab, s in styles.items()]
    legend(fig, handles, spec.by)
    n_init = int(prof["init"]["n"].max()) if len(prof["init"]) else 0
    suptitle(fig, f"Signal propagation by {spec.by or 'run'}: per-layer activation std and "
                  f"gradient norm\n(median over runs, up to {n_init} per line)")
    return spec.save(fig, "signal_propagation")


def _layer_lines(ax: plt.Axes, sub: pd.DataFrame, stat: str, cmap: ListedColormap,
                 norm: BoundaryNorm) -> None:
    """One line per layer index of sub (epoch -> stat), colored by layer, as one collection."""
    segs, idx = [], []
    for layer, line in sub.groupby("layer", sort=True):
        xy = line[["epoch", stat]].to_numpy(dtype=float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy):
            segs.append(xy)
            idx.append(layer)
    if segs:
        lc = LineCollection(segs, cmap=cmap, norm=norm, lw=1.5)
        lc.set_array(np.asarray(idx, dtype=float))
        ax.add_collection(lc)
        ax.autoscale_view()


def layers_over_epochs(a: Analysis, spec: PlotSpec) -> Path | None:
    """Per hidden layer: dead-or-saturated fraction (top row) and mean activation (bottom)
    against epoch, one column per `by` level, one line per layer index (sequential colors),
    mean over the seeds and other factors of completed runs: the Glorot & Bengio view."""
    runs = a.runs.assign(_by=spec.labels(a.runs, spec.by))
    prof = layer_curves(a.rs, runs, ["_by"])
    if prof.empty:
        return None
    present = set(prof["_by"])
    levels = [lv for lv in spec.levels.get(spec.by or "", ["all runs"]) if lv in present]
    shown = levels[:MAX_LAYER_COLUMNS]
    n_layers = int(prof["layer"].max()) + 1
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n_layers)))
    norm = BoundaryNorm(np.arange(-0.5, n_layers), n_layers)
    fig, axes = plt.subplots(2, len(shown), figsize=(3.0 * len(shown) + 1.8, 5.8), sharex=True,
                             sharey="row", squeeze=False, layout="constrained")
    for j, lvl in enumerate(shown):
        sub = prof[prof["_by"] == lvl]
        for i, stat in enumerate(LAYER_TRACES):
            _layer_lines(axes[i, j], sub, stat, cmap, norm)
            axes[i, j].grid(alpha=0.3)
        n_runs = int(sub.loc[sub["layer"] == sub["layer"].min(), "n"].max())
        head = f"{spec.by} = {lvl}" if spec.by else "all runs"
        axes[0, j].set_title(wrap(f"{head} ({n_runs} runs)", 2.9), fontsize="medium")
        axes[1, j].set_xlabel("epoch")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylim(-0.03, 1.03)
    axes[0, 0].set_ylabel("dead (ReLU) or saturated\nfraction of units")
    axes[1, 0].set_ylabel("mean activation")
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9,
                      label="layer index (0 = first hidden)")
    cb.locator = MaxNLocator(integer=True)
    cb.update_ticks()
    others = [f for f in spec.factors if f != spec.by]
    pooled = spec.seeds + (f" and every level of {', '.join(others)}" if others else "")
    notes = []
    if (prof.groupby(["_by", "epoch"])["n"].nunique() > 1).any():
        notes.append("a deep layer averages only the runs that have it")
    if len(levels) > len(shown):
        notes.append(f"first {len(shown)} of {len(levels)} {spec.by} levels")
    suptitle(fig, f"Dead or saturated units and mean activation per hidden layer over "
                  f"training, one column per {spec.by or 'run'} level\n"
                  f"mean over {pooled} (completed runs)"
                  + (f"; {'; '.join(notes)}" if notes else ""))
    return spec.save(fig, "layers_over_epochs")


def walltime(a: Analysis, spec: PlotSpec) -> Path | None:
    """Final metric against wall time, one point per completed run."""
    value = f"final_{spec.metric}"
    table = a.table.assign(_by=spec.labels(a.table, spec.by),
                           _facet=spec.labels(a.table, spec.facet, "all"))
    done = table[(table["status"] == "completed") & table["wall_time_s"].notna()]
    if done.empty:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 4.8), layout="constrained")
    use_marker = spec.facet is not None and len(spec.levels[spec.facet]) <= len(MARKERS)
    markers = dict(zip(spec.levels[spec.facet], MARKERS, strict=False)) if use_marker else {}
    for (bl, fl), pts in done.groupby(["_by", "_facet"], sort=False):
        ax.scatter(pts["wall_time_s"], pts[value], s=22, alpha=0.75,
                   color=spec.color(spec.by, bl), marker=markers.get(fl, "o"), lw=0)
    if spans_decades(done["wall_time_s"], 30):
        ax.set_xscale("log")
    if spans_decades(done[value]):
        ax.set_yscale("log")
    ax.set_xlabel("wall time of the run (s)")
    ax.set_ylabel(f"final {spec.metric}")
    ax.grid(alpha=0.3, which="both")
    handles = color_handles(spec, spec.by)
    handles += [Line2D([], [], color="gray", marker=m, ls="", label=f"{spec.facet}={lab}")
                for lab, m in markers.items()]
    legend(fig, handles, spec.by)
    suptitle(fig, f"final {spec.metric} against wall time\none point per completed run "
                  f"({len(done)} runs, {spec.seeds})")
    return spec.save(fig, "walltime")
