"""Finite-difference gradient checks of an MLP's backward, in float64 on a copy of the model:
entry by entry (`gradcheck`) or along random directions, per parameter tensor
(`gradcheck_directions`)."""

from __future__ import annotations

from collections.abc import Callable

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


# move(t) sets the perturbed parameter to its original value + t (times the direction of the
# check); move(None) restores the original values exactly.
Move = Callable[[float | None], None]


def _entry_move(flat: Tensor, j: int) -> Move:
    """Move entry j of `flat` (a parameter tensor's flat view) alone."""
    old = float(flat[j])

    def move(t: float | None) -> None:
        flat[j] = old if t is None else old + t

    return move


def _direction_move(p: Tensor, v: Tensor) -> Move:
    """Move all of `p` along `v`, in place (p is a view into the model's one param buffer); each
    step starts from a copy of the original values, so no rounding of +h then -h accumulates."""
    p0 = p.clone()

    def move(t: float | None) -> None:
        p.copy_(p0)
        if t is not None:
            p.add_(v, alpha=t)

    return move


class _Probe:
    """Central differences of the loss along one move of one parameter tensor (one entry, or a
    direction over all of its entries).

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

    def quotient(self, move: Move, h: float) -> tuple[float, float] | None:
        """(numeric derivative along `move`, its round-off bound) at step h; None if the step
        crosses a kink. The parameter is restored exactly afterwards."""
        move(h)
        lp, sp = self._loss()
        move(-h)
        lm, sm = self._loss()
        move(None)
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


def _check(probe: _Probe, move: Move, ana: float, h: float, floor: float, retry_above: float,
           second: float) -> float | None:
    """The error of one move against its analytic derivative `ana`; None if every step crossed a
    kink. A step that crosses one is retried 10x smaller (KINK_RETRIES times); an error above
    `retry_above` is measured again at h * `second` and the smaller one kept."""
    for _ in range(KINK_RETRIES + 1):
        q = probe.quotient(move, h)
        if q is not None:
            break
        h /= 10
    if q is None:  # every step crossed a kink
        return None
    err = _rel(ana, *q, floor)
    if err > retry_above:
        q2 = probe.quotient(move, h * second)
        if q2 is not None:
            err = min(err, _rel(ana, *q2, floor))
    return err


def _setup(model: MLP, X: Tensor, y: Tensor) -> tuple[MLP, dict[str, Tensor], _Probe, float]:
    """The float64 CPU copy, its gradients on (X, y) (train mode, BN running stats untouched),
    the probe that reruns its loss with the same dropout mask, and the second step's factor."""
    m = model.clone(dtype=torch.float64, device="cpu")
    X = X.detach().to(dtype=torch.float64, device="cpu")
    y = y.detach().to(device="cpu")
    if m.task == "regression":
        y = y.to(torch.float64)
    rng_state = m.generator.get_state()  # before the forward that draws the dropout mask
    out, cache = m.forward(X, True, update_running=False)
    dout = m.loss_grad(out, y)
    grads = m.backward(dout, cache)
    probe = _Probe(m, y, cache, rng_state)
    second = 0.1 if probe.signs0 is not None else 10.0
    return m, grads, probe, second


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
    m, grads, probe, second = _setup(model, X, y)
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
            err = _check(probe, _entry_move(flat, j), ana, h, floor, retry_above, second)
            if err is not None:
                worst = max(worst, err)
    return worst


def gradcheck_directions(
    model: MLP, X: Tensor, y: Tensor, per_tensor: int = 1, eps: float = 1e-6, seed: int = 0,
    floor: float = 1e-4, retry_above: float = 1e-7,
) -> float:
    """Max relative error between backward's directional derivatives and central differences
    along `per_tensor` random directions of every parameter tensor.

    Why: `gradcheck` samples entries, so a backward wrong in one entry of a large weight (a
    4096-entry fc.W checked at a handful of entries) passes unless that entry is drawn. A
    direction v (standard normal, unit L2 norm, shape of p) moves every entry of p at once: the
    analytic <g, v> takes every entry of the gradient g, so a wrong entry anywhere shifts it (by
    its error times its v_j, which a normal draw makes nonzero) and the check sees it. It costs 2
    forwards per direction, per tensor, instead of 2 per entry. The trade: an error is measured
    against the derivative along the whole direction, about ||g|| / sqrt(numel) in size, so a
    wrong entry reads as its error over that (1% of ||g|| in one entry: 1e-3 to 1e-1 by seed),
    where an entry check that draws the entry reads it against that entry's own gradient.

    The same set-up as `gradcheck`: a float64 CPU copy of `model` (train mode, fixed dropout
    mask, BN running stats untouched; without dropout, a parameter of layer i reruns only layers
    i.. by `forward_from`). The numeric value is (L(p + h v) - L(p - h v)) / 2h with
    h = eps * max(max|p|, 1), p moved in place and restored exactly after each quotient. The
    same error, round-off bound and retries: max(|a - n| - noise, 0) / max(|a| + |n|, floor),
    noise = ROUNDOFF_ULPS ulps of max(|L+|, |L-|, 1) / h; with relu / leaky_relu a step that
    moves any pre-activation of layers i.. across 0 is retried 10x smaller (up to KINK_RETRIES
    times) and the direction skipped if every step crosses a kink; an error above `retry_above`
    is measured again at a second step (10x larger, 10x smaller at kinks) and the smaller kept.
    The directions are drawn from `torch.Generator().manual_seed(seed)`, tensor by tensor in
    param order: the same seed gives the same result.
    """
    if isinstance(per_tensor, bool) or not isinstance(per_tensor, int) or per_tensor < 1:
        raise ValueError(f"per_tensor must be an integer >= 1, got {per_tensor!r}")
    m, grads, probe, second = _setup(model, X, y)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for name, p in m.params.items():
        probe.at_layer(_layer(name))
        g = grads[name]
        h = eps * max(float(p.abs().max()), 1.0)
        for _ in range(per_tensor):
            v = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            v /= torch.linalg.vector_norm(v)
            ana = float((g * v).sum())
            err = _check(probe, _direction_move(p, v), ana, h, floor, retry_above, second)
            if err is not None:
                worst = max(worst, err)
    return worst
