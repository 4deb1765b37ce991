"""Tensors kept as views of one 1-D buffer, so that one kernel updates them all."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# Each view starts on a 64-byte boundary of its buffer, as a tensor of its own would (PyTorch's
# CPU allocator aligns to 64 bytes): BLAS picks its kernels by the address, so a gradient written
# into a view is then the same, bit for bit, as one computed into a fresh tensor. The buffer ends
# on one too (zeros after the last view): a kernel over the whole buffer then runs its vector
# loop on every element, never a scalar tail, which may round differently (`torch._fused_sgd_`'s
# does: mlp_core.optim).
ALIGN_BYTES = 64


def _offsets(shapes: Sequence[Sequence[int]], element_size: int) -> tuple[list[int], int]:
    """Where each shape's view starts in the buffer, and the buffer's length (elements): each
    start and the end on an ALIGN_BYTES boundary."""
    step = max(1, ALIGN_BYTES // element_size)
    offsets, end = [], 0
    for shape in shapes:
        start = -(-end // step) * step
        offsets.append(start)
        end = start + math.prod(shape)
    return offsets, -(-end // step) * step


def views_of(flat: Tensor, shapes: Sequence[Sequence[int]]) -> list[Tensor]:
    """Views of the 1-D `flat`, one per shape, laid out as `zeros_packed` lays them."""
    offsets, end = _offsets(shapes, flat.element_size())
    if end != flat.numel():
        raise ValueError(f"the shapes need a buffer of {end} elements, got {flat.numel()}")
    return [flat[o:o + math.prod(shape)].view(shape)
            for o, shape in zip(offsets, shapes, strict=True)]


def zeros_packed(like: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """A new zeroed 1-D buffer and views of it shaped like `like` (one dtype and device), in
    order, each on a 64-byte boundary (the gaps stay 0)."""
    first = like[0]
    end = _offsets([t.shape for t in like], first.element_size())[1]
    flat = torch.zeros(end, dtype=first.dtype, device=first.device)
    return flat, views_of(flat, [t.shape for t in like])


def packed(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Copies of `tensors` (one dtype and device) as views of one new buffer, in order."""
    out = zeros_packed(tensors)[1]
    for dst, src in zip(out, tensors, strict=True):
        dst.copy_(src)
    return out


def flat_view(tensors: Sequence[Tensor]) -> Tensor | None:
    """The 1-D tensor that holds `tensors` laid out as `zeros_packed` lays them (the gaps
    between them included): they must be contiguous views of one storage with one dtype and
    device, and their storage must hold the buffer's end. None when they are not (a tensor
    replaced in a dict, a copy from elsewhere)."""
    if not tensors:
        return None
    first = tensors[0]
    ptr, base = first.untyped_storage().data_ptr(), first.storage_offset()
    offsets, end = _offsets([t.shape for t in tensors], first.element_size())
    for t, o in zip(tensors, offsets, strict=True):
        if (t.dtype != first.dtype or t.device != first.device or not t.is_contiguous()
                or t.untyped_storage().data_ptr() != ptr or t.storage_offset() != base + o):
            return None
    if first.untyped_storage().nbytes() < (base + end) * first.element_size():
        return None
    return first.as_strided((end,), (1,), base)


class FlatGrads(dict):
    """Gradients written into one buffer: a plain name -> tensor dict whose tensors are views
    of the 1-D `flat`, laid out like a model's params (`MLP.new_grads`). An optimizer whose
    params are laid out alike updates them all from `flat` in one kernel per step of its rule.
    `views` holds the tensors as made, so that a tensor swapped into the dict is noticed."""

    def __init__(self, names: Sequence[str], flat: Tensor, views: list[Tensor]) -> None:
        super().__init__(zip(names, views, strict=True))
        self.flat, self.views = flat, views
