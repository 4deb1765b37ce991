"""compare's paper figures: Ioffe & Szegedy Fig. 1 (percentile bands) and Glorot & Bengio Fig. 2."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg

from experiments.analysis.analyse import analyse
from experiments.analysis.draw import FIGURES, draw
from experiments.analysis.load import load_runs
from experiments.analysis.paper_figures import (
    configurations,
    layer_activation_bands,
    percentile_bands,
)
from experiments.benchmarks.fake_sweep import make_fake_sweep


def test_each_configuration_is_drawn_from_its_own_lowest_seed_run(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 8, 3, factors={"batchnorm": [False, True]},
                            p_diverged=0, p_failed=0)
    a = analyse(load_runs([sweep]))
    confs = configurations(a)
    assert list(confs["label"]) == ["batchnorm=false", "batchnorm=true"]
    for c in confs.itertuples():
        runs = a.runs.loc[c.run_ids]
        assert runs["batchnorm"].nunique() == 1  # never pooled across levels
        assert len(runs) == 4 and c.seed == runs["seed"].min() == a.runs.loc[c.run_id, "seed"]
    assert percentile_bands in FIGURES and layer_activation_bands in FIGURES
    written = {p.name: p for p in draw(a, tmp_path, [percentile_bands, layer_activation_bands])}
    assert set(written) == {"pre_activation_percentiles.png", "layer_activation_bands.png"}
    for p in written.values():
        assert mpimg.imread(p).shape[1] > 600  # a real multi-panel figure


def test_too_many_configurations_draw_no_paper_figure(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 14, 2,
                            factors={"activation": ["relu", "tanh"], "depth": [1, 2, 3, 4]},
                            p_diverged=0, p_failed=0)
    a = analyse(load_runs([sweep]))
    assert configurations(a).empty
    assert draw(a, tmp_path, [percentile_bands, layer_activation_bands]) == []
