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
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm, Normalize
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from experiments.analysis.aggregate import LAYER_TRACES, curve_bands, layer_curves, layer_profile
from experiments.analysis.analyse import Analysis
from experiments.analysis.style import (
    ARCH_KEYS,
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
    plain,
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
    """Per epoch, one color per `by` level and one panel per `facet` level: the average of the
    configuration means of completed runs for cols (first solid, with a 95% bootstrap band
    over seeds where every configuration has 3; next dashed); diverged runs one by one up to
    their divergence (x), running runs dotted. None when nothing is drawable."""
    live = long["status"].isin(("completed", "diverged", "running"))
    if not live.any() or cols[0] not in long:
        return None
    long = long.assign(_by=spec.labels(long, spec.by), _facet=spec.labels(long, spec.facet, "all"))
    cells = [f for f in spec.factors if f in long]
    bands = {c: curve_bands(long, ["_by", "_facet"], cells, c) for c in cols}
    single = long[long["status"].isin(("diverged", "running"))]
    facets = spec.levels.get(spec.facet or "", ["all"])[:MAX_FACETS] if spec.facet else ["all"]
    ncols = min(len(facets), 3)
    nrows = math.ceil(len(facets) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols + 2.2, 3.0 * nrows + 0.9),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    values = []
    for ax, fl in zip(axes.flat, facets, strict=False):
        for c, ls in zip(cols, STYLES, strict=False):
            st = bands[c][bands[c]["_facet"] == fl]
            for bl, line in st.groupby("_by", sort=False):
                color = spec.color(spec.by, bl)
                ax.plot(line["epoch"], line["mean"], ls=ls, color=color, lw=1.6)
                values.append(line["mean"].to_numpy())
                if ls == "-" and line["lo"].notna().any():
                    ax.fill_between(line["epoch"], line["lo"], line["hi"], color=color,
                                    alpha=0.2, lw=0)
        for _, run in single[single["_facet"] == fl].groupby("run_id", sort=False):
            xy = run[["epoch", cols[0]]].to_numpy(dtype=float)
            xy = xy[np.isfinite(xy).all(axis=1)]
            if not len(xy):
                continue
            color = spec.color(spec.by, run["_by"].iat[0])
            diverged = run["status"].iat[0] == "diverged"
            ax.plot(xy[:, 0], xy[:, 1], color=color, lw=0.8, alpha=0.7,
                    ls="-" if diverged else ":")
            if diverged:
                ax.plot(xy[-1, 0], xy[-1, 1], marker="x", ms=7, mew=1.5, color=color)
            values.append(xy[:, 1])
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
    if single["status"].eq("diverged").any():
        handles.append(Line2D([], [], color="gray", lw=0.8, marker="x", label="diverged run"))
    if single["status"].eq("running").any():
        handles.append(Line2D([], [], color="gray", lw=0.8, ls=":", label="running run"))
    legend(fig, handles, spec.by)
    what = " and ".join(cols)
    panels = f", one panel per {spec.facet}" if spec.facet else ""
    suptitle(fig, f"{what} per epoch by {spec.by or 'run'}{panels}\n"
                  f"average of configuration means over {spec.replicates} (completed runs); "
                  "band: 95% bootstrap over seeds (n >= 3)")
    return spec.save(fig, name)


def final_by_factor(a: Analysis, spec: PlotSpec) -> Path | None:
    """One panel per factor: per level the average of its configuration means (dot) with the
    95% interval of groups.csv (bars; a thin min-max line when n < 3), single runs as gray
    dots (x: a diverged or failed run counted at the worst value)."""
    t = a.table
    counted = t[t[a.value].notna()]
    if not spec.factors or counted.empty:
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
        x = counted[f].map(fmt).map(pos).to_numpy(dtype=float)
        x = x + rng.uniform(-0.15, 0.15, x.size)
        bad = ~counted["status"].eq("completed").to_numpy()
        ax.scatter(x[~bad], counted[a.value][~bad], s=8, color="0.6", alpha=0.6, lw=0, zorder=1)
        ax.scatter(x[bad], counted[a.value][bad], s=14, color="0.45", marker="x", lw=0.8,
                   zorder=1)
        for _, row in a.by_factor[f].dropna(subset=["mean"]).iterrows():
            lab = fmt(row[f])
            color = spec.color(f, lab)
            if pd.notna(row["ci_lo"]):
                ax.errorbar(pos[lab], row["mean"], capsize=4, color=color, zorder=2, fmt="o",
                            ms=7, yerr=[[row["mean"] - row["ci_lo"]], [row["ci_hi"] - row["mean"]]])
            else:
                ax.vlines(pos[lab], row["min"], row["max"], color=color, lw=1, zorder=2)
                ax.plot(pos[lab], row["mean"], "o", ms=7, color=color, zorder=2)
        ax.set_xticks(range(len(labels)), [plain(v) for v in labels],
                      rotation=30 if len(labels) > 4 else 0)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_xlabel(f)
        ax.grid(alpha=0.3, axis="y")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{a.metric} (outcome)")
    if spans_decades(counted[a.value]):
        axes[0, 0].set_yscale("log")
    suptitle(fig, f"{a.metric} per level of each factor: average of configuration means, 95% "
                  f"bootstrap interval over seeds (thin line: min–max when n < 3)\n"
                  f"gray dots: single runs ({spec.seeds}); x: diverged or failed, counted as "
                  f"{a.worst:.4g}")
    return spec.save(fig, "final_by_factor")


def heatmaps(an: Analysis, spec: PlotSpec) -> list[Path]:
    """Mean outcome for each pair of factors (the average of the configuration means over the
    other factors), all on one colour scale."""
    cells = an.groups.dropna(subset=["mean"])
    pairs = list(itertools.combinations(spec.factors, 2))[:MAX_HEATMAPS]
    if cells.empty or not pairs:
        return []
    grids = []
    for a, b in pairs:
        g = (cells.assign(_a=cells[a].map(fmt), _b=cells[b].map(fmt))
             .groupby(["_a", "_b"]).agg(mean=("mean", "mean"), n=("n", "sum")))
        mean = g["mean"].unstack("_b").reindex(index=spec.levels[a], columns=spec.levels[b])
        grids.append((a, b, mean, g["n"].unstack("_b").reindex_like(mean)))
    allv = np.concatenate([m.to_numpy(dtype=float).ravel() for _, _, m, _ in grids])
    allv = allv[np.isfinite(allv)]
    norm = LogNorm(allv.min(), allv.max()) if spans_decades(allv) else \
        Normalize(allv.min(), allv.max())
    paths = []
    for a, b, mean, count in grids:
        fig, ax = plt.subplots(figsize=(max(1.1 * len(mean.columns) + 3.2, 6.0),
                                        0.7 * len(mean.index) + 2.0), layout="constrained")
        im = ax.imshow(mean.to_numpy(dtype=float), cmap="viridis" if spec.hib else "viridis_r",
                       aspect="auto", norm=norm)
        if mean.size <= 150:
            for (i, j), v in np.ndenumerate(mean.to_numpy(dtype=float)):
                rgba = im.cmap(im.norm(v)) if np.isfinite(v) else (1, 1, 1, 1)
                dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
                n = count.iat[i, j]
                txt = f"{v:.3g}\nn={int(n)}" if np.isfinite(v) else "no run\ncounted"
                ax.text(j, i, txt, ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")
        ax.set_xticks(range(len(mean.columns)), [plain(v) for v in mean.columns],
                      rotation=30 if len(mean.columns) > 4 else 0)
        ax.set_yticks(range(len(mean.index)), [plain(v) for v in mean.index])
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        fig.colorbar(im, ax=ax, label=f"{spec.metric} (mean outcome)")
        rest = " and the other factors" if len(spec.factors) > 2 else ""
        suptitle(fig, f"{spec.metric}: {a} × {b} (brighter is better; one colour scale for "
                      f"every heatmap)\nmean over {spec.seeds}{rest} (n = runs counted)")
        paths.append(spec.save(fig, f"heatmap_{a}__{b}"))
    return paths


def signal_propagation(a: Analysis, spec: PlotSpec) -> Path | None:
    """Median activation std and weight-gradient norm per layer, at init and after training:
    color = `by` level, line style = `facet` level (when it has few levels), one panel column
    per depth when depth varies otherwise (layer indices of different depths never pooled)."""
    rs = a.rs
    runs = a.runs.assign(_by=spec.labels(a.runs, spec.by),
                         _facet=spec.labels(a.runs, spec.facet, "all"))
    if rs.layers.empty or not runs.index.isin(rs.layers["run_id"]).any():
        return None
    use_facet = spec.facet is not None and len(spec.levels[spec.facet]) <= MAX_STYLES
    arch = next((k for k in ARCH_KEYS if k in spec.factors and k != spec.by
                 and not (use_facet and k == spec.facet)), None)
    runs = runs.assign(_arch=spec.labels(runs, arch, ""))
    keys = ["_by"] + (["_facet"] if use_facet else []) + ["_arch"]
    prof = {w: layer_profile(rs, runs, keys, w) for w in ("init", "end")}
    archs = spec.levels[arch][:MAX_STYLES] if arch else [""]
    panels = [(w, t, d) for d in archs for w, t in (("init", "at initialization"),
                                                   ("end", "after training"))]
    fig, axes = plt.subplots(2, len(panels), figsize=(2.9 * len(panels) + 2.6, 6.8),
                             sharex=arch is None, sharey="row", squeeze=False,
                             layout="constrained")
    styles = dict(zip(spec.levels[spec.facet], STYLES, strict=False)) if use_facet else {}
    for j, (when, title, d) in enumerate(panels):
        for i, stat in enumerate(["act_std", "grad_norm"]):
            ax = axes[i, j]
            sub = prof[when][prof[when]["_arch"] == d]
            for gkey, line in sub.groupby(keys, sort=False):
                y = line[stat].where(line[stat] > 0)
                ax.plot(line["layer"], y, color=spec.color(spec.by, gkey[0]),
                        ls=styles.get(gkey[1], "-") if use_facet else "-", marker=".", lw=1.4)
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            if i == 0:
                ax.set_title(wrap(f"{arch} = {d}: {title}" if arch else title, 2.6),
                             fontsize="medium")
    axes[0, 0].set_ylabel("activation std (log)")
    axes[1, 0].set_ylabel("‖∂loss/∂W‖ (log)")
    for ax in axes[1]:
        ax.set_xlabel("layer index (0 = first hidden)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = color_handles(spec, spec.by)
    if use_facet:
        handles += [Line2D([], [], color="gray", ls=s, label=f"{spec.facet}={lab}")
                    for lab, s in styles.items()]
    legend(fig, handles, spec.by)
    n_init = int(prof["init"]["n"].max()) if len(prof["init"]) else 0
    cut = (f"; first {len(archs)} of {len(spec.levels[arch])} {arch} levels (--filter for "
           "others)" if arch and len(spec.levels[arch]) > len(archs) else "")
    suptitle(fig, f"Signal propagation by {spec.by or 'run'}: per-layer activation std and "
                  f"gradient norm (last index = output layer)\n(median over runs, up to "
                  f"{n_init} per line; at init: all runs, after training: completed runs{cut})")
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
    against epoch, one column per configuration (never averaged across levels), one line per
    layer index (sequential colors), mean over its seeds (completed runs): the Glorot &
    Bengio view."""
    cells = list(spec.factors)
    label = pd.Series("all runs", index=a.runs.index, dtype=object)
    if cells:
        label = spec.labels(a.runs, cells[0]).radd(f"{cells[0]}=")
        for f in cells[1:]:
            label = label + f", {f}=" + spec.labels(a.runs, f)
    has_layers = (a.runs.index.isin(a.rs.layers["run_id"]) if len(a.rs.layers) else
                  np.zeros(len(a.runs), dtype=bool)) & a.runs["status"].eq("completed")
    order = a.runs[has_layers].sort_values(cells, kind="stable").index if cells else \
        a.runs.index[has_layers]
    present = list(dict.fromkeys(label[order]))
    shown = present[:MAX_LAYER_COLUMNS]
    runs = a.runs.assign(_cell=label)
    prof = layer_curves(a.rs, runs[runs["_cell"].isin(shown)], ["_cell"])
    if prof.empty:
        return None
    shown = [c for c in shown if c in set(prof["_cell"])]
    n_layers = int(prof["layer"].max()) + 1
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n_layers)))
    norm = BoundaryNorm(np.arange(-0.5, n_layers), n_layers)
    fig, axes = plt.subplots(2, len(shown), figsize=(3.0 * len(shown) + 1.8, 6.2), sharex=True,
                             sharey="row", squeeze=False, layout="constrained")
    for j, cell in enumerate(shown):
        sub = prof[prof["_cell"] == cell]
        for i, stat in enumerate(LAYER_TRACES):
            _layer_lines(axes[i, j], sub, stat, cmap, norm)
            axes[i, j].grid(alpha=0.3)
        n_runs = int(sub.loc[sub["layer"] == sub["layer"].min(), "n"].max())
        axes[0, j].set_title(wrap(f"{cell} ({n_runs} runs)", 2.9), fontsize="small")
        axes[1, j].set_xlabel("epoch")
        axes[1, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylim(-0.03, 1.03)
    axes[0, 0].set_ylabel("dead (ReLU) or saturated\nfraction of units")
    axes[1, 0].set_ylabel("mean activation")
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.9,
                      label="layer index (0 = first hidden)")
    cb.locator = MaxNLocator(integer=True)
    cb.update_ticks()
    more = (f"; first {len(shown)} of {len(present)} configurations (choose others with "
            "--filter)" if len(present) > len(shown) else "")
    suptitle(fig, f"Dead or saturated units and mean activation per hidden layer over "
                  f"training, one column per configuration\nmean over {spec.seeds} of "
                  f"completed runs{more}")
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
