"""Every backward against central finite differences and against torch.autograd."""

from __future__ import annotations

import itertools

import pytest
import torch

from mlp_core.gradcheck import gradcheck, gradcheck_directions
from mlp_core.init import INITS
from mlp_core.layers import ACTIVATIONS
from mlp_core.model import MLP, MLPClassifier, MLPRegressor
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


def one_percent_wrong(monkeypatch) -> None:
    """Make every activation's backward wrong by 1%."""
    import mlp_core.model as model_mod

    real = model_mod.act_backward
    monkeypatch.setattr(model_mod, "act_backward", lambda *a: real(*a) * 1.01)


@pytest.mark.parametrize("check", [gradcheck, gradcheck_directions])
def test_gradcheck_catches_a_wrong_backward(monkeypatch, check):
    model, X, y = make("classification", "tanh", "xavier", False, 2)
    one_percent_wrong(monkeypatch)
    with torch.inference_mode():
        assert check(model, X, y) > 1e-3


@pytest.mark.parametrize("activation,batchnorm,task",
                         list(itertools.product(["relu", "sigmoid", "tanh", "gelu"], [False, True],
                                                HEADS)))
def test_gradcheck_directions_passes_correct_nets(activation, batchnorm, task):
    model, X, y = make(task, activation, "he", batchnorm, 3)
    with torch.inference_mode():
        assert gradcheck_directions(model, X, y, per_tensor=3) < 1e-6


@pytest.mark.parametrize("task", HEADS)
def test_gradcheck_directions_passes_with_dropout(task):
    model, X, y = make(task, "relu", "he", True, 2, dropout=0.3)
    with torch.inference_mode():
        assert gradcheck_directions(model, X, y, per_tensor=3) < 1e-6


def one_wrong_entry(monkeypatch, name: str = "fc1.W", j: int = 123) -> None:
    """Make backward wrong in entry j of param `name` alone, by 1% of that tensor's grad norm."""
    real = MLP.backward

    def backward(self, dout, cache, out=None):
        grads = real(self, dout, cache, out)
        g = grads[name]
        g.view(-1)[j] += 0.01 * float(torch.linalg.vector_norm(g))
        return grads

    monkeypatch.setattr(MLP, "backward", backward)


@pytest.mark.parametrize("per_tensor", [1, 2])  # 1: what the harness runs
def test_gradcheck_directions_catches_one_wrong_entry_of_a_large_weight(monkeypatch,
                                                                         per_tensor):
    gen = torch.Generator().manual_seed(0)
    model = MLPClassifier(16, 3, [32, 32], activation="tanh", dtype=torch.float64, seed=0)
    X = torch.randn(12, 16, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=gen)
    one_wrong_entry(monkeypatch)  # entry 123 of fc1.W's 1024
    with torch.inference_mode():
        for seed in range(6):  # whatever the directions drawn
            assert gradcheck_directions(model, X, y, per_tensor=per_tensor, seed=seed) > 1e-4
        # where 40 sampled entries (the harness's old check) miss it
        assert gradcheck(model, X, y, n_checks=40) < 1e-6


def test_gradcheck_directions_makes_two_forwards_per_direction_on_a_smooth_net(monkeypatch):
    model, X, y = make("classification", "tanh", "xavier", True, 3)
    real = MLP.forward_from
    starts: list[int] = []

    def forward_from(self, start, *a, **kw):
        starts.append(start)
        return real(self, start, *a, **kw)

    monkeypatch.setattr(MLP, "forward_from", forward_from)
    with torch.inference_mode():
        assert gradcheck_directions(model, X, y, per_tensor=2) < 1e-6
    n_tensors = len(model.params)  # 4 Linear (W, b) + 3 BatchNorm (gamma, beta): 14
    assert len(starts) == 1 + 2 * 2 * n_tensors  # the gradient's forward, then +h, -h each
    assert starts[0] == 0 and starts.count(3) == 2 * 2 * 2  # fc3.W, fc3.b: from layer 3 on


def test_gradcheck_directions_leaves_the_params_unchanged_bit_for_bit(monkeypatch):
    model, X, y = make("classification", "gelu", "he", True, 3)
    before = {k: v.clone() for k, v in model.params.items()}
    real = MLP.clone
    clones: list[MLP] = []

    def clone(self, *a, **kw):
        clones.append(real(self, *a, **kw))
        return clones[-1]

    monkeypatch.setattr(MLP, "clone", clone)
    with torch.inference_mode():
        gradcheck_directions(model, X, y, per_tensor=3)
    (checked,) = clones  # the float64 copy the directions moved: restored exactly
    for k, v in before.items():
        assert torch.equal(model.params[k].view(torch.int64), v.view(torch.int64)), k
        assert torch.equal(checked.params[k].view(torch.int64), v.view(torch.int64)), k


def test_gradcheck_directions_is_deterministic_for_a_seed(monkeypatch):
    model, X, y = make("classification", "tanh", "xavier", False, 2)
    one_percent_wrong(monkeypatch)  # errors that depend on the directions
    with torch.inference_mode():
        a, b = (gradcheck_directions(model, X, y, per_tensor=2, seed=7) for _ in range(2))
        other = gradcheck_directions(model, X, y, per_tensor=2, seed=8)
    assert a == b and a > 1e-3
    assert other != a  # the seed draws the directions


def test_gradcheck_samples_large_nets():
    model = MLPClassifier(64, 10, [256, 256], dtype=torch.float32, seed=1)
    X = torch.randn(16, 64)
    y = torch.randint(0, 10, (16,))
    with torch.inference_mode():
        err = gradcheck(model, X, y, n_checks=100)
    assert err < 1e-5
    assert model.params["fc0.W"].dtype == torch.float32  # the check ran on a float64 copy


@pytest.mark.parametrize("per_tensor", [0, -1, 1.5, True])
def test_gradcheck_directions_needs_at_least_one_direction(per_tensor):
    model, X, y = make("classification", "tanh", "xavier", False, 2)
    with pytest.raises(ValueError, match="per_tensor must be an integer >= 1"):
        gradcheck_directions(model, X, y, per_tensor=per_tensor)
