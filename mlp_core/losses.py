"""Losses returning (loss, dout): mean softmax cross-entropy and mean squared error."""

from __future__ import annotations

from torch import Tensor


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of int64 labels y (N,) under softmax(logits (N, C)).

    With z shifted by its row max (so exp never overflows and the row sum s is >= 1):
    loss_i = log s_i - z_{i,y_i}, the log-sum-exp form, and dlogits = (softmax - onehot) / N.
    Written as a few small kernels: faster here than torch.log_softmax on narrow rows.
    """
    n = logits.shape[0]
    loss, e, s = _log_sum_exp_loss(logits, y)
    dlogits = e.div_(s.mul_(n))  # softmax / N
    dlogits.scatter_(1, y.view(-1, 1), -1.0 / n, reduce="add")  # - onehot / N
    return loss, dlogits


def _log_sum_exp_loss(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The mean cross-entropy, with exp(z) (N, C) and its row sums s (N, 1) for the gradient."""
    z = logits - logits.amax(dim=1, keepdim=True)  # (N, C), max 0 per row
    e = z.exp()
    s = e.sum(dim=1, keepdim=True)  # (N, 1), in [1, C]
    return (s.log() - z.gather(1, y.view(-1, 1))).mean(), e, s


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """The loss of `softmax_cross_entropy` alone (the same computation, so the same value),
    for evaluations that need no gradient."""
    return _log_sum_exp_loss(logits, y)[0]


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
    return loss, diff.mul_(2.0 / diff.numel())
