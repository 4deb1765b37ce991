"""Finite-difference gradient check of an MLP's backward, in float64 on a copy of the model."""

from __future__ import annotations

import torch
from torch import Tensor

from mlp_core.model import MLP

KINKED = ("relu", "leaky_relu")  # piecewise-linear: a difference quotient across 0 is meaningless


def _signs(model: MLP, cache: dict) -> Tensor | None:
    """Sign pattern of every pre-activation of a kinked activation (None for smooth ones)."""
    if model.activation in KINKED and cache["pre"]:
        return torch.cat([(z > 0).view(-1) for z in cache["pre"]])
    return None


def _loss(model: MLP, X: Tensor, y: Tensor, rng_state: Tensor) -> tuple[float, Tensor | None]:
    """Loss with a fixed dropout mask, and the sign pattern of the pre-activations (for kinks)."""
    model.generator.set_state(rng_state)  # the same dropout mask on every evaluation
    out, cache = model._forward(X, True, update_running=False)
    loss, _ = model.loss_and_grad(out, y)
    return float(loss), _signs(model, cache)


def gradcheck(
    model: MLP, X: Tensor, y: Tensor, n_checks: int = 200, eps: float = 1e-6, seed: int = 0,
    floor: float = 1e-4,
) -> float:
    """Max relative error between backward's gradient and central differences.

    Works on a float64 CPU copy of `model` (train mode, fixed dropout mask, BN running stats
    untouched); checks every entry of small nets and `n_checks` entries spread over all
    params (at least 3 per tensor) of large ones. rel = |a - n| / max(|a| + |n|, floor): the
    floor keeps the ~1e-10 round-off of a difference quotient on a gradient that is exactly 0
    (a bias before BatchNorm) from reading as a 100% error. With relu / leaky_relu, a step
    that moves some pre-activation across 0 (a kink, where the loss has no derivative) is
    retried with a 10x smaller step, up to 3 times; an entry that still crosses one is skipped.
    """
    m = model.clone(dtype=torch.float64, device="cpu")
    X = X.detach().to(dtype=torch.float64, device="cpu")
    y = y.detach().to(device="cpu")
    if m.task == "regression":
        y = y.to(torch.float64)
    rng_state = m.generator.get_state()
    out, cache = m._forward(X, True, update_running=False)
    _, dout = m.loss_and_grad(out, y)
    grads = m.backprop(dout, cache)
    signs0 = _signs(m, cache)

    gen = torch.Generator().manual_seed(seed)
    total = sum(p.numel() for p in m.params.values())
    worst = 0.0
    for name, p in m.params.items():
        flat, gflat = p.view(-1), grads[name].reshape(-1)
        k = p.numel() if total <= n_checks else max(3, round(n_checks * p.numel() / total))
        idx = torch.randperm(p.numel(), generator=gen)[: min(k, p.numel())]
        for j in idx.tolist():
            old, ana = float(flat[j]), float(gflat[j])
            for h in (eps, eps / 10, eps / 100, eps / 1000):
                flat[j] = old + h
                lp, sp = _loss(m, X, y, rng_state)
                flat[j] = old - h
                lm, sm = _loss(m, X, y, rng_state)
                flat[j] = old
                if signs0 is None or (torch.equal(sp, signs0) and torch.equal(sm, signs0)):
                    num = (lp - lm) / (2 * h)
                    worst = max(worst, abs(ana - num) / max(abs(ana) + abs(num), floor))
                    break
    return worst
