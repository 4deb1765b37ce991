"""Layers as forward/backward pairs: Linear, BatchNorm1d, activations, inverted Dropout."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mlp_core.scalars import scalar

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "silu")
LEAKY_SLOPE = 0.01
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------- Linear
def _narrow(h: Tensor, W: Tensor) -> bool:
    """True where h @ W and dW = h^T dout are faster computed transposed on the CPU, as
    (W^T h^T)^T and (dout^T h)^T: a narrow layer (fewer than 16 outputs, one AVX-512 vector;
    typically the logits) over a sizeable input. MKL is 1.3-5x slower when the result's rows
    are that short (measured: dW for 128x128 -> 10 up to 512x1024 -> 10, 1 and 2 threads; the
    logits of 1438 x 64 -> 10 with their log-softmax, one thread: 364 -> 174 us)."""
    return W.shape[1] < 16 and h.shape[0] * h.shape[1] >= 8192 and h.device.type == "cpu"


# Narrow logits are computed transposed from this many rows on (an eval pass). A training
# batch of 64 computes them as they are: in a whole step the transposed form's three extra
# kernels (two transposes and a copy) cost more than MKL's slower kernel saves (the [128, 128]
# digits step, 2026-12-01: 1.726M against 1.765M instructions by callgrind, ~3% faster
# alternated in one process), while alone it is 0.85x, and 0.57x at 128 rows. The Trainer's
# `TrainStep` computes them transposed at any batch: it keeps them so through the loss and the
# backward, without the transposes and the copy.
NARROW_FORWARD_ROWS = 128


def linear_forward(h: Tensor, W: Tensor, b: Tensor) -> Tensor:
    """out = h @ W + b.  h: (N, D), W: (D, M), b: (M,) -> out: (N, M). Cache is just h."""
    if _narrow(h, W) and h.shape[0] >= NARROW_FORWARD_ROWS:
        return torch.addmm(b.view(-1, 1), W.t(), h.t()).t().contiguous()
    return torch.addmm(b, h, W)


def linear_backward(
    dout: Tensor, h: Tensor, W: Tensor, need_dh: bool = True,
    out: tuple[Tensor, Tensor] | None = None, need_db: bool = True,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """dout: (N, M) -> dh: (N, D) (None if not needed), dW: (D, M), db: (M,).

    out: (dW, db) tensors to write the gradients into (the model's flat gradient buffer).
    need_db=False: db is known to be 0 (a Linear followed by BatchNorm, which subtracts every
    column's batch mean: the loss does not depend on b, and dout sums to 0 over the batch), so
    it is not summed; it is returned as zeros (left untouched in `out`, whose entries start at
    0 and are never written)."""
    if out is None:
        dW = dout.t().mm(h).t().contiguous() if _narrow(h, W) else h.t().mm(dout)  # h^T dout
        db = dout.sum(0) if need_db else dout.new_zeros(dout.shape[1])
    else:
        dW, db = out
        if _narrow(h, W):
            dW.copy_(dout.t().mm(h).t())
        else:
            torch.mm(h.t(), dout, out=dW)
        if need_db:
            torch.sum(dout, 0, out=db)
    dh = dout.mm(W.t()) if need_dh else None
    return dh, dW, db


# ---------------------------------------------------------------- BatchNorm1d
def batchnorm_forward(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    train: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    update_running: bool = True,
) -> tuple[Tensor, tuple | None]:
    """BatchNorm over the batch dim, the semantics of PyTorch's BatchNorm1d.

    Train: normalize with the batch mean and *biased* variance; running stats move by
    `momentum` towards the batch mean and the *unbiased* variance (in place).
    Eval: normalize with the running stats. Returns out (N, D) and the cache for backward.
    """
    if not train:  # x * a + (beta - mean * a) with a = gamma / sqrt(var + eps): one pass over
        # x instead of three, the form of PyTorch's own CPU inference kernel
        a = _running_scale(gamma, running_var, eps)
        return torch.addcmul(torch.addcmul(beta, running_mean, a, value=-1), x, a), None
    out, cache, total, sq_dev = batchnorm_train(x, gamma, beta, eps)
    if update_running:
        update_running_stats([running_mean], [running_var], [total], [sq_dev], x.shape[0],
                             momentum)
    return out, cache


def batchnorm_fold(W: Tensor, b: Tensor, gamma: Tensor, beta: Tensor, running_mean: Tensor,
                   running_var: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """(W', b') with h @ W' + b' = eval-mode BatchNorm of h @ W + b: the running stats' affine
    map x * a + (beta - mean * a), a = gamma / sqrt(var + eps), folded into the Linear before
    it, so an eval pass makes one GEMM per layer instead of a GEMM and a pass over its output."""
    a = _running_scale(gamma, running_var, eps)
    return W * a, torch.addcmul(beta, b - running_mean, a)


def _running_scale(gamma: Tensor, running_var: Tensor, eps: float) -> Tensor:
    """a = gamma / sqrt(running_var + eps): eval-mode BatchNorm's scale."""
    return torch.rsqrt(running_var + eps).mul_(gamma)


def batchnorm_train(x: Tensor, gamma: Tensor, beta: Tensor,
                    eps: float = 1e-5) -> tuple[Tensor, tuple, Tensor, Tensor]:
    """Train-mode BatchNorm without the running stats: out, the cache for backward, and x's
    column sums and column sums of squared deviations from the mean, for
    `update_running_stats` (the model updates every layer's running stats in one go after its
    forward)."""
    n = x.shape[0]
    if n < 2:  # one sample has no variance: out would be beta and no gradient would flow
        raise ValueError(f"BatchNorm in training needs a batch of at least 2 samples, got {n}")
    # Two passes (mean, then the mean square of x - mu), the centred x reused for xhat: as
    # exact as torch.var_mean's Welford update and half its time on (64, 64) batches, whose
    # column reductions take ~50 us there against ~8 us for a mean.
    # The mean as the column sum times 1/n, folded into the subtraction (x - sum / n in one
    # kernel): `Tensor.mean` of float32 goes through a dtype round trip on the CPU that costs
    # more than the sum itself on such small batches.
    total = x.sum(0)
    xc = torch.sub(x, total, alpha=1.0 / n)
    sq_dev = (xc * xc).sum(0)
    istd = torch.add(scalar(eps, x), sq_dev, alpha=1.0 / n).rsqrt_()  # biased variance normalizes
    xhat = xc.mul_(istd)
    out = torch.addcmul(beta, xhat, gamma)
    return out, (xhat, gamma, istd), total, sq_dev


def update_running_stats(running_means: list[Tensor], running_vars: list[Tensor],
                         totals: list[Tensor], sq_devs: list[Tensor], n: int,
                         momentum: float = 0.1) -> None:
    """Move each running mean by `momentum` towards its batch mean (total / n) and each running
    var towards the *unbiased* batch variance (sq_dev / (n - 1)), in place: PyTorch's
    BatchNorm1d rule, for several layers in three kernels (`torch._foreach_*`)."""
    # the factor as a 0-d tensor: CPU `_foreach_mul_` converts a Python float once per tensor
    torch._foreach_mul_(running_means + running_vars, scalar(1.0 - momentum, running_means[0]))
    torch._foreach_add_(running_means, totals, alpha=momentum / n)
    torch._foreach_add_(running_vars, sq_devs, alpha=momentum / (n - 1))


def batchnorm_backward(dout: Tensor, cache: tuple, out: tuple[Tensor, Tensor] | None = None
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """dout: (N, D) -> dx: (N, D), dgamma: (D,), dbeta: (D,); out: (dgamma, dbeta) tensors to
    write those two into.

    With xhat = (x - mu) * istd and dxhat = dout * gamma, differentiating through mu and
    the biased var (d var/dx_i = 2 (x_i - mu) / n, d mu/dx_i = 1/n) gives
        dx = istd / n * (n * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)).
    """
    xhat, gamma, istd = cache
    n = dout.shape[0]
    if out is None:
        dbeta, dgamma = dout.sum(0), (dout * xhat).sum(0)
    else:
        dgamma, dbeta = out
        torch.sum(dout, 0, out=dbeta)
        torch.sum(dout * xhat, 0, out=dgamma)
    # sum(dxhat) = gamma * dbeta and sum(dxhat * xhat) = gamma * dgamma, so
    # dx = gamma * istd * (dout - xhat * dgamma / n - dbeta / n): three kernels on (N, D)
    dx = torch.addcmul(dout, xhat, dgamma, value=-1.0 / n).add_(dbeta, alpha=-1.0 / n)
    dx.mul_(gamma * istd)
    return dx, dgamma, dbeta


# ---------------------------------------------------------------- activations
def act_forward(name: str, x: Tensor) -> Tensor:
    """Apply the activation `name` to the pre-activation x; finite for |x| up to 1e4."""
    if name == "relu":
        return torch.relu(x)
    if name == "leaky_relu":
        return torch.where(x > 0, x, x * LEAKY_SLOPE)
    if name == "sigmoid":
        return torch.sigmoid(x)  # evaluated stably (no exp overflow) by torch
    if name == "tanh":
        return torch.tanh(x)
    if name == "gelu":  # exact: x * Phi(x)
        return x * (0.5 * (1.0 + torch.erf(x * _INV_SQRT2)))
    if name == "silu":
        return x * torch.sigmoid(x)
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")


def act_backward(name: str, dout: Tensor, x: Tensor, out: Tensor, inplace: bool = False) -> Tensor:
    """d loss / d x given d loss / d out, the pre-activation x and the output out.

    inplace=True lets relu, sigmoid and tanh write the result into dout (the model passes a
    dout it owns)."""
    if name == "relu":  # dout * (out > 0), as one fused kernel (no bool mask, no dtype cast)
        if inplace:
            return torch.ops.aten.threshold_backward.grad_input(dout, out, 0, grad_input=dout)
        return torch.ops.aten.threshold_backward(dout, out, 0)
    if name == "leaky_relu":
        return torch.where(x > 0, dout, dout * LEAKY_SLOPE)
    # sigmoid and tanh: their derivatives from the output, each as one fused ATen kernel (a
    # plain elementwise op, like relu's threshold_backward) instead of three
    if name == "sigmoid":  # s' = s (1 - s)
        if inplace:
            return torch.ops.aten.sigmoid_backward.grad_input(dout, out, grad_input=dout)
        return torch.ops.aten.sigmoid_backward(dout, out)
    if name == "tanh":  # t' = 1 - t^2
        if inplace:
            return torch.ops.aten.tanh_backward.grad_input(dout, out, grad_input=dout)
        return torch.ops.aten.tanh_backward(dout, out)
    if name == "gelu":  # (x Phi)' = Phi(x) + x phi(x); phi underflows to 0 for large |x|
        Phi = 0.5 * (1.0 + torch.erf(x * _INV_SQRT2))
        phi = torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return dout * (Phi + x * phi)
    if name == "silu":  # (x s)' = s (1 + x (1 - s))
        s = torch.sigmoid(x)
        return dout * (s * (1.0 + x * (1.0 - s)))
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")


# ---------------------------------------------------------------- Dropout
def dropout_forward(x: Tensor, p: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Inverted dropout: keep each unit with prob 1-p and scale by 1/(1-p). Returns out, mask."""
    mask = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator).div_(scalar(1.0 - p, x))
    return x * mask, mask


def dropout_backward(dout: Tensor, mask: Tensor) -> Tensor:
    """dx = dout * mask (the mask already holds the 1/(1-p) scale)."""
    return dout * mask
