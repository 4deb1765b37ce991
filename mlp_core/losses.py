"""Losses returning (loss, dout): mean softmax cross-entropy and mean squared error."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mlp_core.scalars import scalar


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of int64 labels y (N,) under softmax(logits (N, C)).

    log p = z - max(z) - log sum exp(z - max(z)), the log-sum-exp form (never overflows; one
    `torch.log_softmax` kernel computes it so); loss = -mean_i log p_{i,y_i} and
    dlogits = (p - onehot) / N with p = exp(log p). Seven kernels: ~40% faster than the
    log-sum-exp written out with a row max, exp, sum and log (a (64, 10) batch: 59 -> 42 us).
    """
    logp = torch.log_softmax(logits, 1)
    loss = _nll(logp, y)  # before _dlogits overwrites logp
    return loss, _dlogits(logp, y)


def softmax_cross_entropy_grad(logits: Tensor, y: Tensor) -> Tensor:
    """d loss / d logits of `softmax_cross_entropy` alone: the same kernels, so the same bits,
    less the three that make the loss (a training step that does not read it skips them)."""
    return _dlogits(torch.log_softmax(logits, 1), y)


def _dlogits(logp: Tensor, y: Tensor) -> Tensor:
    """(softmax - onehot) / N from log p (N, C), written over logp."""
    n = logp.shape[0]
    # the factors as cached 0-d tensors: `mul_` wraps a Python float in a tensor and converts
    # it every call (5.8 -> 3.2 us on (64, 10)); the product is the same bit for bit
    dlogits = logp.exp_().mul_(scalar(1.0 / n, logp))  # softmax / N
    dlogits.scatter_(1, y.view(-1, 1), -1.0 / n, reduce="add")  # - onehot / N
    return dlogits


def _nll(logp: Tensor, y: Tensor) -> Tensor:
    """-mean_i logp[i, y_i], as a sum times -1/N (`Tensor.mean` of float32 makes a dtype round
    trip on the CPU that costs more than the sum on small batches); NaN for no rows, as a mean."""
    n = logp.shape[0]
    return logp.gather(1, y.view(-1, 1)).sum().mul_(scalar(-1.0 / n if n else math.nan, logp))


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """The loss of `softmax_cross_entropy` alone (the same computation, so the same value),
    for evaluations that need no gradient."""
    return _nll(torch.log_softmax(logits, 1), y)


def _squared_error(pred: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The mean of (pred - y)^2 over all elements, and pred - y."""
    diff = pred - y.view_as(pred)
    return (diff * diff).mean(), diff


def squared_error(pred: Tensor, y: Tensor) -> Tensor:
    """The loss of `mse` alone (the same computation, so the same value)."""
    return _squared_error(pred, y)[0]


def mse(pred: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over all elements of (pred - y)^2 (PyTorch's MSELoss); dpred = 2 (pred - y) / numel."""
    loss, diff = _squared_error(pred, y)
    return loss, _dpred(diff)


def mse_grad(pred: Tensor, y: Tensor) -> Tensor:
    """d loss / d pred of `mse` alone (the same kernels, so the same bits)."""
    return _dpred(pred - y.view_as(pred))


def _dpred(diff: Tensor) -> Tensor:
    """2 (pred - y) / numel from diff = pred - y, written over diff."""
    return diff.mul_(scalar(2.0 / diff.numel(), diff))
