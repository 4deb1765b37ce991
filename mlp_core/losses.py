"""Losses returning (loss, dout): mean softmax cross-entropy and mean squared error."""

from __future__ import annotations

import torch
from torch import Tensor


def softmax_cross_entropy(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of int64 labels y (N,) under softmax(logits (N, C)).

    log softmax = z - logsumexp(z), stable for any finite z; dlogits = (softmax - onehot) / N.
    """
    n = logits.shape[0]
    lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (N, 1)
    idx = y.view(-1, 1)
    loss = (lse - logits.gather(1, idx)).mean()
    dlogits = torch.exp(logits - lse)  # softmax (N, C)
    dlogits.scatter_add_(1, idx, torch.full_like(lse, -1.0))
    dlogits.mul_(1.0 / n)
    return loss, dlogits


def mse(pred: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean over all elements of (pred - y)^2 (PyTorch's MSELoss); dpred = 2 (pred - y) / numel."""
    diff = pred - y.view_as(pred)
    loss = (diff * diff).mean()
    return loss, diff.mul_(2.0 / diff.numel())
