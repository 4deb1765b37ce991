"""Weight initialization schemes for Linear layers (biases 0, BN gamma 1, beta 0)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

INITS = ("he", "he_uniform", "xavier", "xavier_uniform", "lecun", "normal", "uniform")


def init_weight(
    scheme: str,
    fan_in: int,
    fan_out: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    std: float = 0.01,
) -> Tensor:
    """A (fan_in, fan_out) weight drawn by `scheme`.

    he N(0, 2/fan_in); he_uniform U(+-sqrt(6/fan_in)); xavier N(0, 2/(fan_in+fan_out));
    xavier_uniform U(+-sqrt(6/(fan_in+fan_out))); lecun N(0, 1/fan_in); normal N(0, std^2);
    uniform U(+-1/sqrt(fan_in)), the "standard" init of Glorot & Bengio (2010) and
    the default of PyTorch's Linear layer.
    """
    # Draw on the CPU in float64 from the CPU generator so weights do not depend on device.
    shape = (fan_in, fan_out)
    if scheme in ("he", "xavier", "lecun", "normal"):
        sd = {
            "he": math.sqrt(2.0 / fan_in),
            "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
            "lecun": math.sqrt(1.0 / fan_in),
            "normal": std,
        }[scheme]
        if scheme == "normal" and not (std > 0 and math.isfinite(std)):
            raise ValueError(f"init_std must be a positive number, got {std!r}")
        W = torch.randn(shape, generator=generator, dtype=torch.float64) * sd
    elif scheme in ("he_uniform", "xavier_uniform", "uniform"):
        bound = {
            "he_uniform": math.sqrt(6.0 / fan_in),
            "xavier_uniform": math.sqrt(6.0 / (fan_in + fan_out)),
            "uniform": 1.0 / math.sqrt(fan_in),
        }[scheme]
        W = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * bound
    else:
        raise ValueError(f"unknown init {scheme!r}; allowed: {', '.join(INITS)}")
    return W.to(dtype=dtype, device=device)
