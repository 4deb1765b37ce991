"""Every backward against central finite differences and against torch.autograd."""

from __future__ import annotations

import itertools

import pytest
import torch

from mlp_core.gradcheck import gradcheck
from mlp_core.init import INITS
from mlp_core.layers import ACTIVATIONS
from mlp_core.model import MLPClassifier, MLPRegressor
from tests.reference import leaf_params, torch_forward, torch_loss

HEADS = {"classification": MLPClassifier, "regression": MLPRegressor}
CASES = list(itertools.product(ACTIVATIONS, INITS, [False, True], [1, 3], HEADS))


def make(task, activation, init, batchnorm, depth, dropout=0.0, seed=0):
    """A small float64 model and a batch for it."""
    gen = torch.Generator().manual_seed(seed)
    in_dim, out_dim, n = 4, 3, 12
    model = HEADS[task](in_dim, out_dim, [5] * depth, activation=activation, init=init,
                        batchnorm=batchnorm, dropout=dropout, dtype=torch.float64, seed=seed,
                        init_std=0.5)
    X = torch.randn(n, in_dim, generator=gen, dtype=torch.float64)
    if task == "classification":
        y = torch.randint(0, out_dim, (n,), generator=gen)
    else:
        y = torch.randn(n, out_dim, generator=gen, dtype=torch.float64)
    return model, X, y


@pytest.mark.parametrize("activation,init,batchnorm,depth,task", CASES)
def test_backward_matches_finite_differences_and_autograd(activation, init, batchnorm, depth, task):
    model, X, y = make(task, activation, init, batchnorm, depth)
    with torch.inference_mode():
        err = gradcheck(model, X, y, n_checks=400, eps=1e-6)
        out, cache = model.forward(X, train=True)
        loss, dout = model.loss_and_grad(out, y)
        grads = model.backward(dout, cache)
    assert err < 1e-5, f"finite-difference rel err {err:.2e}"

    P = leaf_params(model)
    buffers = {k: torch.zeros_like(v) for k, v in model.buffers.items()}
    ref_loss = torch_loss(model, torch_forward(model, P, X, buffers=buffers), y)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-12, atol=1e-12)
    assert list(grads) == list(model.params)
    for k, g in grads.items():
        assert g.shape == model.params[k].shape
        torch.testing.assert_close(g, P[k].grad, rtol=1e-9, atol=1e-12, msg=k)


@pytest.mark.parametrize("task", HEADS)
def test_dropout_backward_matches_autograd_with_the_same_mask(task):
    model, X, y = make(task, "relu", "he", True, 2, dropout=0.3)
    with torch.inference_mode():
        err = gradcheck(model, X, y, n_checks=400)
        out, cache = model.forward(X, train=True)
        _, dout = model.loss_and_grad(out, y)
        grads = model.backward(dout, cache)
    assert err < 1e-5
    P = leaf_params(model)
    buffers = {k: torch.zeros_like(v) for k, v in model.buffers.items()}
    ref = torch_loss(model, torch_forward(model, P, X, buffers=buffers, masks=cache["masks"]), y)
    ref.backward()
    for k, g in grads.items():
        torch.testing.assert_close(g, P[k].grad, rtol=1e-9, atol=1e-12, msg=k)


def test_gradcheck_catches_a_wrong_backward(monkeypatch):
    model, X, y = make("classification", "tanh", "xavier", False, 2)
    import mlp_core.model as model_mod

    real = model_mod.act_backward
    monkeypatch.setattr(model_mod, "act_backward", lambda *a: real(*a) * 1.01)
    with torch.inference_mode():
        assert gradcheck(model, X, y) > 1e-3


def test_gradcheck_samples_large_nets():
    model = MLPClassifier(64, 10, [256, 256], dtype=torch.float32, seed=1)
    X = torch.randn(16, 64)
    y = torch.randint(0, 10, (16,))
    with torch.inference_mode():
        err = gradcheck(model, X, y, n_checks=100)
    assert err < 1e-5
    assert model.params["fc0.W"].dtype == torch.float32  # the check ran on a float64 copy
