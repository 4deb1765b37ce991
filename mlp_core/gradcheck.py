"""Finite-difference gradient check of an MLP's backward, in float64 on a copy of the model."""

from __future__ import annotations

import torch
from torch import Tensor

from mlp_core.model import MLP


def _loss(model: MLP, X: Tensor, y: Tensor, rng_state: Tensor) -> float:
    model.generator.set_state(rng_state)  # the same dropout mask on every evaluation
    out, _ = model._forward(X, True, update_running=False)
    loss, _ = model.loss_and_grad(out, y)
    return float(loss)


def gradcheck(
    model: MLP, X: Tensor, y: Tensor, n_checks: int = 200, eps: float = 1e-6, seed: int = 0,
    floor: float = 1e-4,
) -> float:
    """Max relative error between backward's gradient and central differences.

    Works on a float64 CPU copy of `model` (train mode, fixed dropout mask, BN running stats
    untouched); checks every entry of small nets and `n_checks` entries spread over all
    params (at least 3 per tensor) of large ones. rel = |a - n| / max(|a| + |n|, floor): the
    floor keeps the ~1e-10 round-off of a difference quotient on a gradient that is exactly 0
    (a bias before BatchNorm) from reading as a 100% error.
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

    gen = torch.Generator().manual_seed(seed)
    total = sum(p.numel() for p in m.params.values())
    worst = 0.0
    for name, p in m.params.items():
        flat, gflat = p.view(-1), grads[name].reshape(-1)
        k = p.numel() if total <= n_checks else max(3, round(n_checks * p.numel() / total))
        idx = torch.randperm(p.numel(), generator=gen)[: min(k, p.numel())]
        for j in idx.tolist():
            old = float(flat[j])
            flat[j] = old + eps
            lp = _loss(m, X, y, rng_state)
            flat[j] = old - eps
            lm = _loss(m, X, y, rng_state)
            flat[j] = old
            num = (lp - lm) / (2 * eps)
            ana = float(gflat[j])
            rel = abs(ana - num) / max(abs(ana) + abs(num), floor)
            worst = max(worst, rel)
    return worst
