"""Per-layer statistics: the pre-activation percentiles of layers.csv against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlp_core.diagnostics import layer_stats
from mlp_core.model import MLPClassifier
from mlp_core.train import LAYER_COLUMNS


@pytest.mark.parametrize("batchnorm", [False, True])
def test_pre_activation_percentiles_are_numpys_of_the_activation_input(batchnorm: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=gen)
    m = MLPClassifier(5, 3, [7, 6], activation="sigmoid", init="xavier", batchnorm=batchnorm,
                      dtype=torch.float64, seed=1)
    rows = layer_stats(m, X, y)
    h, P = X, m.params
    for i, row in enumerate(rows):  # recompute each layer's input to its nonlinearity by hand
        z = h @ P[f"fc{i}.W"] + P[f"fc{i}.b"]
        if batchnorm and i < 2:  # train-mode BN: batch mean, biased variance
            z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
            z = z * P[f"bn{i}.gamma"] + P[f"bn{i}.beta"]
        for p in (15, 50, 85):
            assert row[f"pre_p{p}"] == pytest.approx(np.percentile(z.numpy(), p), abs=1e-12)
            assert row[f"unit0_pre_p{p}"] == pytest.approx(np.percentile(z[:, 0].numpy(), p),
                                                           abs=1e-12)
        assert row["pre_p15"] < row["pre_p50"] < row["pre_p85"]
        h = torch.sigmoid(z)
    assert set(LAYER_COLUMNS) - {"epoch"} == set(rows[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_percentiles_are_numpys_for_every_size_and_dtype(dtype: torch.dtype, n: int) -> None:
    from mlp_core.diagnostics import PERCENTILES, _percentiles

    x = torch.randn(n, generator=torch.Generator().manual_seed(n)).to(dtype)
    want = [float(np.percentile(x.double().numpy(), p)) for p in PERCENTILES]
    assert _percentiles(x) == pytest.approx(want, abs=1e-12)
    x[n // 2] = float("nan")
    assert all(math.isnan(v) for v in _percentiles(x))
