"""Model structure, BatchNorm, inits, numerical stability, dropout, and the no-autograd rule."""

from __future__ import annotations

import math
import pathlib
import re

import pytest
import torch
import torch.nn.functional as F

import mlp_core
from mlp_core.init import init_weight
from mlp_core.layers import ACTIVATIONS, act_backward, act_forward
from mlp_core.losses import mse, softmax_cross_entropy
from mlp_core.model import MLPClassifier, MLPRegressor


def test_param_and_buffer_names_follow_the_design():
    m = MLPClassifier(3, 4, [5, 6], batchnorm=True)
    assert list(m.params) == ["fc0.W", "fc0.b", "bn0.gamma", "bn0.beta",
                              "fc1.W", "fc1.b", "bn1.gamma", "bn1.beta", "fc2.W", "fc2.b"]
    assert m.params["fc0.W"].shape == (3, 5) and m.params["fc2.W"].shape == (6, 4)
    assert list(m.buffers) == ["bn0.running_mean", "bn0.running_var",
                               "bn1.running_mean", "bn1.running_var"]
    assert torch.all(m.params["bn1.gamma"] == 1) and torch.all(m.params["fc1.b"] == 0)
    assert not any(p.requires_grad for p in m.params.values())
    assert m.n_params == 3 * 5 + 5 + 10 + 5 * 6 + 6 + 12 + 6 * 4 + 4
    assert list(MLPRegressor(2, 1, []).params) == ["fc0.W", "fc0.b"]


@pytest.mark.parametrize("bad", [dict(activation="foo"), dict(init="bar"), dict(hidden=[0]),
                                 dict(dropout=1.0), dict(dtype="float16")])
def test_bad_constructor_arguments_raise_value_error(bad):
    kw = dict(in_dim=2, out_dim=2, hidden=[4]) | bad
    with pytest.raises(ValueError):
        MLPClassifier(**kw)


def test_batchnorm_running_stats_and_eval_output_match_torch():
    gen = torch.Generator().manual_seed(0)
    m = MLPClassifier(4, 3, [7], batchnorm=True, dtype=torch.float64, seed=3)
    rm, rv = torch.zeros(7, dtype=torch.float64), torch.ones(7, dtype=torch.float64)
    with torch.inference_mode():
        for _ in range(5):
            X = torch.randn(10, 4, generator=gen, dtype=torch.float64) * 3 + 1
            out, cache = m.forward(X, train=True)
            z = X @ m.params["fc0.W"] + m.params["fc0.b"]
            ref = F.batch_norm(z, rm, rv, m.params["bn0.gamma"], m.params["bn0.beta"],
                               training=True, momentum=0.1, eps=1e-5)
            torch.testing.assert_close(cache["pre"][0], ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.buffers["bn0.running_mean"], rm, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.buffers["bn0.running_var"], rv, rtol=1e-12, atol=1e-12)
        m.params["bn0.gamma"].uniform_(0.5, 1.5, generator=gen)
        out, cache = m.forward(X, train=False)
        z = X @ m.params["fc0.W"] + m.params["fc0.b"]
        ref = F.batch_norm(z, rm, rv, m.params["bn0.gamma"], m.params["bn0.beta"],
                           training=False, eps=1e-5)
        torch.testing.assert_close(cache["pre"][0], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheme,var", [
    ("he", lambda i, o: 2 / i), ("he_uniform", lambda i, o: 2 / i),
    ("xavier", lambda i, o: 2 / (i + o)), ("xavier_uniform", lambda i, o: 2 / (i + o)),
    ("lecun", lambda i, o: 1 / i), ("normal", lambda i, o: 0.05 ** 2),
    ("uniform", lambda i, o: 1 / (3 * i)),
])
def test_init_variance_matches_the_scheme(scheme, var):
    fan_in, fan_out = 400, 300
    W = init_weight(scheme, fan_in, fan_out, torch.Generator().manual_seed(0),
                    dtype=torch.float64, std=0.05)
    assert W.shape == (fan_in, fan_out)
    assert abs(float(W.mean())) < 4 * math.sqrt(var(fan_in, fan_out) / W.numel())
    assert float(W.var()) == pytest.approx(var(fan_in, fan_out), rel=0.02)
    if scheme.endswith("uniform"):
        assert float(W.abs().max()) <= math.sqrt(3 * var(fan_in, fan_out)) + 1e-12


def test_init_is_seeded_and_device_dtype_independent():
    a = MLPClassifier(5, 3, [8], seed=7).params["fc0.W"]
    b = MLPClassifier(5, 3, [8], seed=7, dtype=torch.float64).params["fc0.W"]
    c = MLPClassifier(5, 3, [8], seed=8).params["fc0.W"]
    assert torch.equal(a, b.float()) and not torch.equal(a, c)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activations_finite_at_large_inputs(name, dtype):
    x = torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=dtype)
    out = act_forward(name, x)
    dx = act_backward(name, torch.ones_like(x), x, out)
    assert torch.isfinite(out).all() and torch.isfinite(dx).all()
    ref = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.01), "sigmoid": torch.sigmoid,
           "tanh": torch.tanh, "gelu": F.gelu, "silu": F.silu}[name](x)
    torch.testing.assert_close(out, ref)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=torch.float32)
    y = torch.tensor([1, 2])
    loss, d = softmax_cross_entropy(logits.clone(), y)
    assert math.isfinite(float(loss)) and torch.isfinite(d).all()
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    assert float(loss) == pytest.approx(1e4, rel=1e-6)  # 2e4 / 2


def test_mse_matches_torch_over_all_elements():
    p, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    loss, d = mse(p.clone(), y)
    assert float(loss) == pytest.approx(float(F.mse_loss(p, y)), rel=1e-12)
    torch.testing.assert_close(d, 2 * (p - y) / 18)


def test_dropout_rate_scale_and_eval_identity():
    m = MLPClassifier(20, 2, [2000], dropout=0.3, seed=0)
    X = torch.randn(64, 20)
    with torch.inference_mode():
        _, cache = m.forward(X, train=True)
        mask = cache["masks"][0]
        assert float((mask == 0).double().mean()) == pytest.approx(0.3, abs=0.01)
        assert torch.allclose(mask[mask != 0], torch.tensor(1 / 0.7))
        _, cache_eval = m.forward(X, train=False)
        assert cache_eval["masks"] == []
        a = m.forward(X, train=False)[0]
        b = m.forward(X, train=False)[0]
        assert torch.equal(a, b)


def test_regressor_metrics():
    m = MLPRegressor(3, 2, [4])
    X, y = torch.randn(50, 3), torch.randn(50, 2)
    with torch.inference_mode():
        r = m.evaluate(X, y)
        pred = m.predict(X)
    sse = float(((pred - y) ** 2).sum())
    sst = float(((y - y.mean(0)) ** 2).sum())
    assert r["mse"] == pytest.approx(sse / y.numel(), rel=1e-5)
    assert r["rmse"] == pytest.approx(math.sqrt(r["mse"]), rel=1e-9)
    assert r["r2"] == pytest.approx(1 - sse / sst, rel=1e-5)


def test_whole_library_runs_inside_inference_mode():
    from mlp_core.data import load_dataset
    from mlp_core.gradcheck import gradcheck, gradcheck_directions
    from mlp_core.optim import SGD, LRSchedule
    from mlp_core.train import TrainConfig, Trainer

    with torch.inference_mode():
        data = load_dataset("moons", n_samples=200, seed=0)
        model = MLPClassifier(data.in_dim, data.out_dim, [16], batchnorm=True, dropout=0.1)
        opt = SGD(model.params, lr=0.1, momentum=0.9)
        trainer = Trainer(model, opt, LRSchedule(0.1, 2), data, TrainConfig(epochs=2))
        recs = list(trainer.run())
        assert gradcheck(model, data.X_train[:8], data.y_train[:8], n_checks=20) < 1e-4
        assert gradcheck_directions(model, data.X_train[:8], data.y_train[:8]) < 1e-4
    assert len(recs) == 3 and trainer.status == "completed"


# autograd in any form: its modules, grad-tracking tensors, and Tensor.backward() calls (no
# arguments or torch's keywords; our own model.backward(dout, cache) is the library's API).
AUTOGRAD = re.compile(r"torch\.autograd|torch\.nn\b|torch\.func|requires_grad|"
                      r"\.backward\(\s*(\)|gradient=|retain_graph=|create_graph=|inputs=)|"
                      r"^\s*(from|import)\s+(hydra|pandas|matplotlib|omegaconf)", re.M)


def test_the_autograd_pattern_catches_autograd_and_spares_our_own_backward():
    for banned in ("loss.backward()", "loss.backward( )", "y.backward(gradient=g)",
                   "torch.autograd.grad(l, p)", "import torch.nn as nn", "w.requires_grad_()",
                   "from torch.func import grad", "import matplotlib.pyplot as plt"):
        assert AUTOGRAD.search(banned), banned
    for allowed in ("grads = model.backward(dout, cache)", "def backward(self, dout, cache):",
                    "dx = act_backward(name, dh, z, a)"):
        assert not AUTOGRAD.search(allowed), allowed


def test_source_never_touches_autograd():
    for path in pathlib.Path(mlp_core.__file__).parent.glob("*.py"):
        hits = [m.group(0) for m in AUTOGRAD.finditer(path.read_text())]
        assert not hits, f"{path.name}: {hits}"


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_loss_alone_is_loss_and_grads_value_bit_for_bit(task: str) -> None:
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(70, 5, generator=gen) * 4
    if task == "classification":
        m, y = MLPClassifier(5, 4, [8]), torch.randint(0, 4, (70,), generator=gen)
    else:
        m, y = MLPRegressor(5, 2, [8]), torch.randn(70, 2, generator=gen)
    with torch.inference_mode():
        out, _ = m.forward(X, train=True)
        assert torch.equal(m.loss(out, y), m.loss_and_grad(out, y)[0])


def test_classifier_metrics_are_cross_entropy_and_accuracy() -> None:
    gen = torch.Generator().manual_seed(4)
    X, y = torch.randn(90, 3, generator=gen) * 3, torch.randint(0, 5, (90,), generator=gen)
    m = MLPClassifier(3, 5, [16], dropout=0.5)
    with torch.inference_mode():
        r = m.evaluate(X, y, batch_size=32)  # three chunks
        logits = m.forward(X, train=False)[0]
    want = torch.nn.functional.cross_entropy(logits, y)
    assert r["loss"] == pytest.approx(float(want), rel=1e-6)
    assert r["loss"] == float(m.loss_and_grad(logits, y)[0])  # the training loss, exactly
    assert r["acc"] == float((logits.argmax(1) == y).double().mean())
    assert set(r) == {"loss", "acc"} and all(type(v) is float for v in r.values())


def test_weight_norm_is_the_norm_of_every_param() -> None:
    m = MLPClassifier(6, 3, [7, 5], batchnorm=True, seed=5)
    flat = torch.cat([p.double().reshape(-1) for p in m.params.values()])
    assert m.weight_norm() == pytest.approx(float(flat.norm()), rel=1e-13)
    assert m.weight_norm() == math.sqrt(sum(float(p.double().pow(2).sum())
                                            for p in m.params.values()))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_forward_from_a_layer_is_the_tail_of_forward_bit_for_bit(batchnorm: bool) -> None:
    # what the gradient check relies on to rerun only the layers after a perturbed parameter
    m = MLPClassifier(5, 3, [6, 7, 4], batchnorm=batchnorm, dtype=torch.float64, seed=2)
    X = torch.randn(9, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.inference_mode():
        before = {k: v.clone() for k, v in m.buffers.items()}
        out, cache = m.forward(X, True, update_running=False)
        m.backward(m.loss_and_grad(out, torch.arange(9) % 3)[1], cache)  # must not touch cache
        for start in range(len(cache["inputs"])):
            tail_out, tail = m.forward_from(start, cache["inputs"][start], True,
                                            update_running=False)
            assert torch.equal(tail_out, out)
            for key in ("inputs", "pre", "post"):
                assert len(tail[key]) == len(cache[key][start:])
                assert all(torch.equal(a, b) for a, b in zip(tail[key], cache[key][start:], strict=True))
        assert all(torch.equal(m.buffers[k], v) for k, v in before.items())
        with pytest.raises(ValueError, match="start must be a Linear layer, 0..3, got 4"):
            m.forward_from(4, cache["inputs"][3])


def test_a_bias_before_batchnorm_has_a_zero_gradient_as_autograd_finds_up_to_round_off() -> None:
    """BatchNorm subtracts every column's batch mean, so the loss does not depend on the bias
    of the Linear before it: backward returns exactly 0 there (into a fresh dict and into
    new_grads() alike) and autograd's column sums are 0 up to float64 round-off."""
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=gen)
    m = MLPClassifier(6, 3, [7, 5], batchnorm=True, dtype=torch.float64, seed=3)
    with torch.inference_mode():
        m.params["fc1.b"].add_(0.7)  # a nonzero bias changes nothing either
        out, cache = m.forward(X)
        _, dout = m.loss_and_grad(out, y)
        grads = [m.backward(dout, cache), m.backward(dout, cache, out=m.new_grads())]
    ref = {k: v.clone().requires_grad_(True) for k, v in m.params.items()}
    h = X
    for i in range(2):
        z = h @ ref[f"fc{i}.W"] + ref[f"fc{i}.b"]
        z = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
        h = torch.relu(z * ref[f"bn{i}.gamma"] + ref[f"bn{i}.beta"])
    F.cross_entropy(h @ ref["fc2.W"] + ref["fc2.b"], y).backward()
    for g in grads:
        for name in ("fc0.b", "fc1.b"):
            assert torch.equal(g[name], torch.zeros_like(g[name]))
            assert ref[name].grad.abs().max() < 1e-15
        assert g["fc2.b"].abs().max() > 1e-3  # the head's bias is no BatchNorm's
        torch.testing.assert_close(g["fc0.W"], ref["fc0.W"].grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [8, 100, 128, 1438])
def test_narrow_logits_computed_transposed_are_h_w_plus_b(rows: int) -> None:
    """The logits of a wide layer into few outputs are computed as (W^T h^T)^T on the CPU
    (layers._narrow) from NARROW_FORWARD_ROWS rows on: the same numbers as h @ W + b on either
    path, contiguous, in both dtypes."""
    from mlp_core.layers import _narrow, linear_forward

    gen = torch.Generator().manual_seed(rows)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        h = torch.randn(rows, 130, generator=gen, dtype=torch.float64)
        W = torch.randn(130, 10, generator=gen, dtype=torch.float64)
        b = torch.randn(10, generator=gen, dtype=torch.float64)
        out = linear_forward(h.to(dtype), W.to(dtype), b.to(dtype))
        assert _narrow(h, W) == (rows >= 64) and out.is_contiguous() and out.dtype == dtype
        torch.testing.assert_close(out.double(), h @ W + b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_loss_grad_is_loss_and_grads_gradient_bit_for_bit(task, dtype):
    gen = torch.Generator().manual_seed(3)
    Model = MLPClassifier if task == "classification" else MLPRegressor
    m = Model(5, 4, [7], dtype=dtype, seed=1)
    X = torch.randn(9, 5, generator=gen, dtype=dtype) * 30  # large logits: a saturated softmax
    y = (torch.randint(0, 4, (9,), generator=gen) if task == "classification"
         else torch.randn(9, 4, generator=gen, dtype=dtype))
    with torch.inference_mode():
        out, _ = m.forward(X)
        loss, dout = m.loss_and_grad(out, y)
        alone = m.loss_grad(out, y)
    assert alone.dtype == dtype and torch.equal(alone, dout)
    assert torch.isfinite(loss)


def test_loss_grad_of_a_subclass_with_its_own_loss_is_that_losss_gradient():
    class Scaled(MLPClassifier):
        def loss_and_grad(self, out, y):
            loss, dout = super().loss_and_grad(out, y)
            return 2 * loss, 2 * dout

    m = Scaled(3, 2, [4], seed=0)
    X, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 0, 1, 0])
    with torch.inference_mode():
        out, _ = m.forward(X)
        assert torch.equal(m.loss_grad(out, y), 2 * softmax_cross_entropy(out, y)[1])
