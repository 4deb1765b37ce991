"""A number as a 0-d tensor of a given dtype and device, made once and reused."""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.lru_cache(maxsize=64)
def _scalar_of(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def scalar(value: float, like: Tensor) -> Tensor:
    """`value` as a 0-d tensor of like's dtype and device, made once: CPU `_foreach_mul_` with
    a Python float converts it for every tensor of the list (64 us for 26 tensors against 29
    with a tensor), and the product is the same bit for bit (the float is rounded to the
    dtype either way; tests/test_optim.py)."""
    return _scalar_of(float(value), like.dtype, like.device)
