"""Finite-difference gradient check of an MLP's backward, in float64 on a copy of the model."""

from __future__ import annotations

import torch
from torch import Tensor

from mlp_core.model import MLP

KINKED = ("relu", "leaky_relu")  # piecewise-linear: a difference quotient across 0 is meaningless
ULP = torch.finfo(torch.float64).eps  # 2.2e-16: float64's relative rounding
ROUNDOFF_ULPS = 16.0  # how many ulps of max(|loss|, 1) one loss evaluation may be off by
KINK_RETRIES = 3  # a step that crosses a kink is retried this many times, 10x smaller each


def _signs(model: MLP, pre: list[Tensor]) -> Tensor | None:
    """Sign pattern of the pre-activations `pre` of a kinked activation (None for smooth ones
    or no hidden layer)."""
    if model.activation in KINKED and pre:
        return torch.cat(pre, dim=1) > 0  # (N, sum of widths): one compare, not one per layer
    return None


def _layer(name: str) -> int:
    """The Linear layer a parameter belongs to: fc2.W, fc2.b, bn2.gamma, bn2.beta -> 2."""
    return int(name.split(".")[0][2:])


class _Probe:
    """Central differences of the loss in one entry of one parameter tensor.

    A parameter of layer i changes nothing before it, so without dropout (whose masks are drawn
    layer by layer from one generator) each loss reruns only layers i.. from the unperturbed
    pass's input to layer i (`MLP.forward_from`): the same values, bit for bit, in fewer
    kernels. Its kinks are likewise looked for in layers i.. only."""

    def __init__(self, m: MLP, y: Tensor, cache: dict, rng_state: Tensor) -> None:
        self.m, self.y, self.rng_state = m, y, rng_state
        self.inputs, self.pre = cache["inputs"], cache["pre"]  # inputs[0] is X
        self.start = 0
        self.signs0 = _signs(m, self.pre)

    def at_layer(self, i: int) -> None:
        """Perturb parameters of layer i from now on."""
        self.start = i if self.m.dropout == 0 else 0
        self.signs0 = _signs(self.m, self.pre[self.start:])

    def _loss(self) -> tuple[float, Tensor | None]:
        """Loss with a fixed dropout mask, and the sign pattern of the pre-activations."""
        self.m.generator.set_state(self.rng_state)  # the same dropout mask on every evaluation
        out, cache = self.m.forward_from(self.start, self.inputs[self.start], True,
                                         update_running=False)
        return float(self.m.loss(out, self.y)), _signs(self.m, cache["pre"])

    def quotient(self, flat: Tensor, j: int, h: float) -> tuple[float, float] | None:
        """(numeric gradient, its round-off bound) at step h; None if the step crosses a kink."""
        old = float(flat[j])
        flat[j] = old + h
        lp, sp = self._loss()
        flat[j] = old - h
        lm, sm = self._loss()
        flat[j] = old
        if self.signs0 is not None and not (torch.equal(sp, self.signs0)
                                            and torch.equal(sm, self.signs0)):
            return None
        # Each loss is off by at most ROUNDOFF_ULPS ulps of max(|L|, 1), so their difference
        # over 2h can be off by that much / h with a perfectly right backward.
        noise = ROUNDOFF_ULPS * ULP * max(abs(lp), abs(lm), 1.0) / h
        return (lp - lm) / (2 * h), noise


def _rel(ana: float, num: float, noise: float, floor: float) -> float:
    """Relative disagreement beyond round-off: max(|a - n| - noise, 0) / max(|a| + |n|, floor)."""
    return max(abs(ana - num) - noise, 0.0) / max(abs(ana) + abs(num), floor)


def gradcheck(
    model: MLP, X: Tensor, y: Tensor, n_checks: int = 200, eps: float = 1e-6, seed: int = 0,
    floor: float = 1e-4, retry_above: float = 1e-7, per_tensor: int = 3,
) -> float:
    """Max relative error between backward's gradient and central differences.

    Works on a float64 CPU copy of `model` (train mode, fixed dropout mask, BN running stats
    untouched); checks every entry of small nets and `n_checks` entries spread over all
    params (at least `per_tensor` per tensor) of large ones. The step of entry p is eps * max(|p|, 1).
    The error of an entry is max(|a - n| - noise, 0) / max(|a| + |n|, floor), where `noise`
    bounds the float64 round-off of the difference quotient (ROUNDOFF_ULPS ulps of the loss
    over the step): a difference the loss's own rounding can explain is no evidence of a wrong
    backward. `floor` keeps a gradient that is exactly 0 (a bias before BatchNorm) from
    reading as a 100% error. With relu / leaky_relu, a step that moves a pre-activation across
    0 (a kink, where the loss has no derivative) is retried 10x smaller, up to KINK_RETRIES
    times; an entry that still crosses one is skipped. An entry above `retry_above` is measured
    again with a second step (10x larger for smooth activations, 10x smaller at kinks) and keeps
    the smaller error: a wrong backward disagrees at every step, round-off and truncation don't.
    """
    m = model.clone(dtype=torch.float64, device="cpu")
    X = X.detach().to(dtype=torch.float64, device="cpu")
    y = y.detach().to(device="cpu")
    if m.task == "regression":
        y = y.to(torch.float64)
    rng_state = m.generator.get_state()  # before the forward that draws the dropout mask
    out, cache = m.forward(X, True, update_running=False)
    _, dout = m.loss_and_grad(out, y)
    grads = m.backward(dout, cache)
    probe = _Probe(m, y, cache, rng_state)
    second = 0.1 if probe.signs0 is not None else 10.0

    gen = torch.Generator().manual_seed(seed)
    total = sum(p.numel() for p in m.params.values())
    worst = 0.0
    for name, p in m.params.items():
        probe.at_layer(_layer(name))
        flat, gflat = p.view(-1), grads[name].reshape(-1)
        k = p.numel() if total <= n_checks else max(per_tensor, round(n_checks * p.numel() / total))
        idx = torch.randperm(p.numel(), generator=gen)[: min(k, p.numel())]
        for j in idx.tolist():
            ana = float(gflat[j])
            h = eps * max(abs(float(flat[j])), 1.0)
            for _ in range(KINK_RETRIES + 1):
                q = probe.quotient(flat, j, h)
                if q is not None:
                    break
                h /= 10
            if q is None:  # every step crossed a kink
                continue
            err = _rel(ana, *q, floor)
            if err > retry_above:
                q2 = probe.quotient(flat, j, h * second)
                if q2 is not None:
                    err = min(err, _rel(ana, *q2, floor))
            worst = max(worst, err)
    return worst
