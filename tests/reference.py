"""An autograd copy of mlp_core's MLP, built from `model.params`: the oracle for the tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TORCH_ACTS = {
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,  # exact (erf) form by default
    "silu": F.silu,
}


def leaf_params(model) -> dict[str, torch.Tensor]:
    """Autograd leaves holding copies of model.params."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in model.params.items()}


def torch_forward(model, P, X, train=True, buffers=None, masks=None):
    """The same network as `model`, written with torch ops so autograd can differentiate it."""
    buffers = model.buffers if buffers is None else buffers
    h = X
    for i in range(model.n_hidden):
        z = h @ P[f"fc{i}.W"] + P[f"fc{i}.b"]
        if model.batchnorm:
            z = F.batch_norm(z, buffers[f"bn{i}.running_mean"], buffers[f"bn{i}.running_var"],
                             P[f"bn{i}.gamma"], P[f"bn{i}.beta"], training=train,
                             momentum=model.bn_momentum, eps=model.bn_eps)
        h = TORCH_ACTS[model.activation](z)
        if masks:
            h = h * masks[i].clone()
    L = model.n_hidden
    return h @ P[f"fc{L}.W"] + P[f"fc{L}.b"]


def torch_loss(model, out, y):
    """Mean cross-entropy or MSE, as torch.nn computes them."""
    if model.task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, y.view_as(out))
