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


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "gelu"])
def test_layer_statistics_are_their_definitions(activation: str) -> None:
    """Every column of layers.csv recomputed by hand (numpy, autograd for the gradient)."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 4, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, 3, (40,), generator=gen)
    m = MLPClassifier(4, 3, [9, 8], activation=activation, init="he", dtype=torch.float64,
                      seed=2)
    prev = {k: v.clone() * 0.9 for k, v in m.params.items() if k.endswith(".W")}
    rows = layer_stats(m, X, y, prev)
    Ws = {k: v.clone().requires_grad_(True) for k, v in m.params.items()}
    acts = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "gelu": torch.nn.functional.gelu}
    h, zs, hs = X, [], []
    for i in range(3):
        z = h @ Ws[f"fc{i}.W"] + Ws[f"fc{i}.b"]
        h = acts[activation](z) if i < 2 else z
        zs.append(z.detach().numpy())
        hs.append(h.detach().numpy())
    torch.nn.functional.cross_entropy(h, y).backward()
    for i, row in enumerate(rows):
        z, a = zs[i], hs[i]
        W = m.params[f"fc{i}.W"].numpy()
        assert row["act_mean"] == pytest.approx(a.mean(), abs=1e-12)
        assert row["act_std"] == pytest.approx(a.std(), abs=1e-12)
        assert row["weight_norm"] == pytest.approx(np.linalg.norm(W), abs=1e-12)
        assert row["grad_norm"] == pytest.approx(float(Ws[f"fc{i}.W"].grad.norm()), rel=1e-9)
        Wp = prev[f"fc{i}.W"].numpy()
        assert row["update_ratio"] == pytest.approx(np.linalg.norm(W - Wp) / np.linalg.norm(Wp),
                                                    rel=1e-9)
        if i == 2:
            assert math.isnan(row["dead_or_saturated_frac"])
            continue
        want = {"relu": (z <= 0).all(0).mean(), "gelu": (z < -3).all(0).mean(),
                "sigmoid": ((a < 0.05) | (a > 0.95)).mean(),
                "tanh": (np.abs(a) > 0.9).mean()}[activation]
        assert row["dead_or_saturated_frac"] == pytest.approx(want, abs=1e-12)
    assert any(0 < r["dead_or_saturated_frac"] < 1 for r in rows[:2]) or activation == "gelu"


@pytest.mark.parametrize(("batchnorm", "dropout"), [(False, 0.0), (False, 0.3), (True, 0.0)])
def test_the_trainers_layer_rows_are_layer_stats_of_its_probe(batchnorm: bool,
                                                              dropout: float) -> None:
    """Without BatchNorm the Trainer takes the probe's pass from its eval pass of the train
    split (the same computation): the rows are layer_stats' own, to float32 round-off."""
    from mlp_core.data import load_dataset
    from mlp_core.optim import SGD, LRSchedule
    from mlp_core.train import TrainConfig, Trainer

    with torch.inference_mode():
        data = load_dataset("moons", n_samples=300, seed=0)
        m = MLPClassifier(2, 2, [16, 16], batchnorm=batchnorm, dropout=dropout, seed=1)
        cfg = TrainConfig(epochs=2, batch_size=32, probe_size=100)
        t = Trainer(m, SGD(m.params, lr=0.1, momentum=0.9), LRSchedule(0.1, epochs=2), data, cfg)
        assert t.probe_in_eval is not batchnorm
        records = list(t.run())
        t.prev_W = None  # update_ratio: nan on both sides
        state = m.generator.get_state()
        want = layer_stats(m, data.X_train[:100], data.y_train[:100], None)
        got = t._record(2, 0.1, 0.0, 0.0).layers
        assert torch.equal(m.generator.get_state(), state)  # the probe drew no dropout mask
    assert len(records) == 3 and all(len(r.layers) == 3 for r in records)
    for w, g in zip(want, got, strict=True):
        for col in LAYER_COLUMNS:
            if col == "epoch":
                continue
            if isinstance(w[col], str):
                assert g[col] == w[col]
                continue
            assert g[col] == pytest.approx(w[col], rel=1e-5, abs=1e-6, nan_ok=True), col


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_saturation_counts_the_band_as_torchs_comparisons_do(activation: str,
                                                             dtype: torch.dtype) -> None:
    """The sigmoid / tanh band is counted by numpy on the CPU: the same fraction, bit for bit,
    as torch's comparisons, at the band's edges (the thresholds in the tensor's dtype, their
    neighbours), with NaN (never saturated) and on a strided view."""
    from mlp_core.diagnostics import saturation

    edges = torch.tensor([0.05, 0.95, 0.9, -0.9], dtype=dtype)
    near = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    gen = torch.Generator().manual_seed(3)
    a = torch.cat([near, torch.rand(500, generator=gen, dtype=dtype) * 2 - 1,
                   torch.tensor([math.nan, 1.0, 0.0, -1.0], dtype=dtype)])
    a = a[: a.numel() // 4 * 4].view(-1, 4)
    for x in (a, a.t()):  # contiguous and not
        want = (((x < 0.05) | (x > 0.95)) if activation == "sigmoid"
                else (x.abs() > 0.9)).double().mean().item()
        got = saturation(activation, x, x)
        assert got == want and 0 < got < 1
