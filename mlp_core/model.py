"""The MLP: hidden blocks Linear -> BatchNorm? -> activation -> Dropout?, then a Linear head."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mlp_core.flat import FlatGrads, packed, zeros_packed
from mlp_core.init import INITS, init_weight
from mlp_core.layers import (
    ACTIVATIONS,
    act_backward,
    act_forward,
    batchnorm_backward,
    batchnorm_fold,
    batchnorm_train,
    dropout_backward,
    dropout_forward,
    linear_backward,
    linear_forward,
    update_running_stats,
)
from mlp_core.losses import (
    cross_entropy,
    mse,
    mse_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
    squared_error,
)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch.float32 / torch.float64 (or their names) -> the torch dtype; anything else raises."""
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; allowed: float32, float64")
        return _DTYPES[dtype]
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"unsupported dtype {dtype}; allowed: float32, float64")
    return dtype


def _pair(grads: dict[str, Tensor] | None, a: str, b: str) -> tuple[Tensor, Tensor] | None:
    """(grads[a], grads[b]), or None without grads."""
    return None if grads is None else (grads[a], grads[b])


class MLP:
    """A multilayer perceptron with hand-written forward and backward passes.

    params: fc0.W (in, h0), fc0.b, [bn0.gamma, bn0.beta], fc1.W, ..., fc{L}.W, fc{L}.b.
    buffers: bn{i}.running_mean, bn{i}.running_var (with batchnorm).
    """

    task = "base"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: list[int] | tuple[int, ...] = (64, 64),
        activation: str = "relu",
        init: str = "he",
        batchnorm: bool = False,
        dropout: float = 0.0,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        dtype: torch.dtype | str = torch.float32,
        device: str | torch.device = "cpu",
        seed: int = 0,
        init_std: float = 0.01,
    ) -> None:
        hidden = [int(h) for h in hidden]
        if int(in_dim) < 1 or int(out_dim) < 1:
            raise ValueError(f"in_dim and out_dim must be >= 1, got {in_dim}, {out_dim}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"every hidden width must be >= 1, got {hidden}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; allowed: {', '.join(INITS)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= bn_momentum <= 1.0 or not bn_eps > 0:
            raise ValueError(f"need 0 <= bn_momentum <= 1 and bn_eps > 0, got {bn_momentum}, {bn_eps}")
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), hidden
        self.activation, self.init, self.init_std = activation, init, float(init_std)
        self.batchnorm, self.dropout = bool(batchnorm), float(dropout)
        self.bn_momentum, self.bn_eps = float(bn_momentum), float(bn_eps)
        self.dtype, self.device = as_dtype(dtype), torch.device(device)
        self.seed = int(seed)
        self.n_hidden = len(hidden)

        init_gen = torch.Generator().manual_seed(self.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed + 1)
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        dims = [self.in_dim, *hidden, self.out_dim]
        kw = {"dtype": self.dtype, "device": self.device}
        for i in range(len(dims) - 1):
            fan_in, fan_out = dims[i], dims[i + 1]
            self.params[f"fc{i}.W"] = init_weight(init, fan_in, fan_out, init_gen, std=init_std, **kw)
            self.params[f"fc{i}.b"] = torch.zeros(fan_out, **kw)
            if self.batchnorm and i < self.n_hidden:
                self.params[f"bn{i}.gamma"] = torch.ones(fan_out, **kw)
                self.params[f"bn{i}.beta"] = torch.zeros(fan_out, **kw)
                self.buffers[f"bn{i}.running_mean"] = torch.zeros(fan_out, **kw)
                self.buffers[f"bn{i}.running_var"] = torch.ones(fan_out, **kw)
        # one buffer holds every param, in order: an optimizer updates them all in one kernel
        # per step of its rule (mlp_core.flat), from gradients that backward lays out alike
        for name, p in zip(list(self.params), packed(list(self.params.values())), strict=True):
            self.params[name] = p
        self._shapes = [p.shape for p in self.params.values()]
        # names per layer, built once: forward/backward run every step and skip the f-strings
        self._fc = [(f"fc{i}.W", f"fc{i}.b") for i in range(len(dims) - 1)]
        self._bn = [(f"bn{i}.gamma", f"bn{i}.beta", f"bn{i}.running_mean", f"bn{i}.running_var")
                    for i in range(self.n_hidden)]

    # ------------------------------------------------------------ forward / backward
    def forward(self, X: Tensor, train: bool = True, update_running: bool = True,
                use_dropout: bool = True) -> tuple[Tensor, dict[str, Any]]:
        """out (N, out_dim) and the cache for backward. train: batch stats + dropout.

        For probes that must not change the model (gradient checks, per-layer statistics):
        update_running=False leaves the BatchNorm running stats alone in train mode;
        use_dropout=False skips dropout in train mode (no mask drawn, the RNG untouched).
        """
        return self.forward_from(0, X, train, update_running, use_dropout)

    def forward_from(self, start: int, h: Tensor, train: bool = True, update_running: bool = True,
                     use_dropout: bool = True) -> tuple[Tensor, dict[str, Any]]:
        """`forward` from Linear layer `start` on, `h` being that layer's input (`inputs[start]`
        of an earlier cache): the same out, the cache of layers start.. only. A gradient check
        that moves a parameter of layer `start` reruns just these layers."""
        if not 0 <= start <= self.n_hidden:
            raise ValueError(f"start must be a Linear layer, 0..{self.n_hidden}, got {start}")
        P, act = self.params, self.activation
        drop = train and use_dropout and self.dropout > 0
        n = h.shape[0]
        inputs, pre, post, bn_caches, masks = [], [], [], [], []
        totals: list[Tensor] = []  # BatchNorm's batch sums and squared deviations, per layer
        sq_devs: list[Tensor] = []
        for i in range(start, self.n_hidden):
            W, b = self._fc[i]
            inputs.append(h)
            if self.batchnorm and not train:  # eval: BatchNorm folded into the Linear (no cache)
                gamma, beta, mean, var = self._bn[i]
                z = linear_forward(h, *batchnorm_fold(P[W], P[b], P[gamma], P[beta],
                                                      self.buffers[mean], self.buffers[var],
                                                      self.bn_eps))
                bn_caches.append(None)
            else:
                z = linear_forward(h, P[W], P[b])  # (N, h_i) = h @ W + b
            if self.batchnorm and train:  # the running stats are updated after the loop
                gamma, beta = self._bn[i][:2]
                z, bn_cache, total, sq_dev = batchnorm_train(z, P[gamma], P[beta], self.bn_eps)
                bn_caches.append(bn_cache)
                totals.append(total)
                sq_devs.append(sq_dev)
            a = act_forward(act, z)
            pre.append(z)
            post.append(a)
            if drop:
                a, mask = dropout_forward(a, self.dropout, self.generator)
                masks.append(mask)
            h = a
        if totals and update_running:
            B = self.buffers
            update_running_stats([B[names[2]] for names in self._bn[start:]],
                                 [B[names[3]] for names in self._bn[start:]], totals, sq_devs,
                                 n, self.bn_momentum)
        W, b = self._fc[self.n_hidden]
        inputs.append(h)
        out = linear_forward(h, P[W], P[b])
        cache = {"inputs": inputs, "pre": pre, "post": post, "bn": bn_caches, "masks": masks}
        return out, cache

    def backward(self, dout: Tensor, cache: dict[str, Any],
                 out: FlatGrads | None = None) -> dict[str, Tensor]:
        """Gradients of the loss w.r.t. every param, same keys, order and shapes as params.

        out: a `new_grads()` of this model to write them into (and return), instead of new
        tensors: a training loop that is done with the last step's gradients reuses one buffer,
        and the optimizer updates every param from it in one kernel per step of its rule."""
        P, L = self.params, self.n_hidden
        inputs, pre, post, masks = cache["inputs"], cache["pre"], cache["post"], cache["masks"]
        g: dict[str, Tensor] = {}
        if out is not None:
            if list(out) != list(P) or [t.shape for t in out.views] != self._shapes \
                    or out.flat.dtype != self.dtype:
                raise ValueError("out must be a new_grads() of this model")
            g = out
        W, b = self._fc[L]
        dh, g[W], g[b] = linear_backward(dout, inputs[L], P[W], out=_pair(out, W, b))
        for i in reversed(range(L)):
            if masks:
                dh = dropout_backward(dh, masks[i])
            # in place: dh is a fresh tensor of ours (a matmul or dropout result)
            dz = act_backward(self.activation, dh, pre[i], post[i], True)  # inplace
            if self.batchnorm:
                gamma, beta = self._bn[i][:2]
                dz, g[gamma], g[beta] = batchnorm_backward(dz, cache["bn"][i],
                                                           out=_pair(out, gamma, beta))
            W, b = self._fc[i]
            # before BatchNorm the bias's gradient is exactly 0 (linear_backward)
            dh, g[W], g[b] = linear_backward(dz, inputs[i], P[W], need_dh=i > 0,
                                             out=_pair(out, W, b), need_db=not self.batchnorm)
        return out if out is not None else {k: g[k] for k in P}

    def new_grads(self) -> FlatGrads:
        """A gradient dict for `backward(..., out=)`: views of one new zeroed buffer laid out
        like the params."""
        return FlatGrads(self.params, *zeros_packed(list(self.params.values())))

    # ------------------------------------------------------------ task-specific
    def loss_and_grad(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Scalar batch-mean loss and d loss / d out."""
        raise NotImplementedError

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The scalar batch-mean loss alone: loss_and_grad's value, without d loss / d out."""
        raise NotImplementedError

    def loss_grad(self, out: Tensor, y: Tensor) -> Tensor:
        """d loss / d out alone: loss_and_grad's gradient, bit for bit. The task classes skip
        the kernels that make the loss (for a step that does not read it); a subclass that
        overrides loss_and_grad alone gets its gradient from there."""
        return self.loss_and_grad(out, y)[1]

    def predict(self, X: Tensor) -> Tensor:
        """Eval-mode prediction."""
        raise NotImplementedError

    def evaluate(self, X: Tensor, y: Tensor, batch_size: int = 8192) -> dict[str, float]:
        """Eval-mode loss and task metrics on (X, y)."""
        return self.read_metrics([self.metric_tensors(self._eval_out(X, batch_size), y)])[0]

    def read_metrics(self, parts: list[dict[str, Tensor]]) -> list[dict[str, float]]:
        """`metric_values` of each `metric_tensors` dict of `parts` (splits), all read back in
        one sync."""
        values = iter(torch.stack([t for part in parts for t in part.values()]).tolist())
        return [self.metric_values({k: next(values) for k in part}) for part in parts]

    def metric_tensors(self, out: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The 0-d float64 tensors `metric_values` turns into the metrics (read back by the
        caller, several splits in one sync)."""
        raise NotImplementedError

    def metric_values(self, values: dict[str, float]) -> dict[str, float]:
        """The metrics from the values of `metric_tensors`."""
        raise NotImplementedError

    def _eval_out(self, X: Tensor, batch_size: int) -> Tensor:
        outs = [self.forward(X[i : i + batch_size], False)[0] for i in range(0, len(X), batch_size)]
        return torch.cat(outs) if len(outs) != 1 else outs[0]

    # ------------------------------------------------------------ utilities
    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.params.values())

    def config(self) -> dict[str, Any]:
        """Constructor arguments, enough to rebuild the same architecture."""
        return {
            "in_dim": self.in_dim, "out_dim": self.out_dim, "hidden": list(self.hidden),
            "activation": self.activation, "init": self.init, "batchnorm": self.batchnorm,
            "dropout": self.dropout, "bn_momentum": self.bn_momentum, "bn_eps": self.bn_eps,
            "dtype": self.dtype, "device": self.device, "seed": self.seed, "init_std": self.init_std,
        }

    def clone(
        self, dtype: torch.dtype | str | None = None, device: str | torch.device | None = None
    ) -> MLP:
        """A new model of the same class with copies of params, buffers and dropout RNG state."""
        cfg = self.config()
        cfg["dtype"] = as_dtype(dtype) if dtype is not None else self.dtype
        cfg["device"] = torch.device(device) if device is not None else self.device
        new = type(self)(**cfg)
        with torch.inference_mode():  # in place: the new params keep their one buffer
            for src, dst in ((self.params, new.params), (self.buffers, new.buffers)):
                for k, v in src.items():
                    dst[k].copy_(v)
        if new.device == self.device:
            new.generator.set_state(self.generator.get_state())
        return new

    def weight_norm(self) -> float:
        """Global L2 norm of all params (the squares summed per tensor in float64, read back in
        one sync, added in param order)."""
        squares = torch.stack([p.double().pow(2).sum() for p in self.params.values()])
        return math.sqrt(sum(squares.tolist()))


class MLPClassifier(MLP):
    """MLP with a softmax cross-entropy head; y holds int64 class labels."""

    task = "classification"

    def loss_and_grad(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean softmax cross-entropy (log-sum-exp) and d loss / d logits."""
        return softmax_cross_entropy(out, y)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Mean softmax cross-entropy alone."""
        return cross_entropy(out, y)

    def loss_grad(self, out: Tensor, y: Tensor) -> Tensor:
        """d loss / d logits alone."""
        if type(self).loss_and_grad is not MLPClassifier.loss_and_grad:  # a subclass's own loss
            return super().loss_grad(out, y)
        return softmax_cross_entropy_grad(out, y)

    def predict(self, X: Tensor) -> Tensor:
        """Predicted class labels (N,)."""
        return self._eval_out(X, 8192).argmax(1)

    def metric_tensors(self, out: Tensor, y: Tensor) -> dict[str, Tensor]:
        """loss and accuracy of the logits `out` (`evaluate` gives {"loss", "acc"})."""
        return {"loss": cross_entropy(out, y).double(), "acc": (out.argmax(1) == y).double().mean()}

    def metric_values(self, values: dict[str, float]) -> dict[str, float]:
        """{"loss", "acc"} as they are."""
        return dict(values)


class MLPRegressor(MLP):
    """MLP with a mean-squared-error head; y is float (N, out_dim)."""

    task = "regression"

    def loss_and_grad(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """MSE over all elements and d loss / d predictions."""
        return mse(out, y)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """MSE over all elements alone."""
        return squared_error(out, y)

    def loss_grad(self, out: Tensor, y: Tensor) -> Tensor:
        """d loss / d predictions alone."""
        if type(self).loss_and_grad is not MLPRegressor.loss_and_grad:  # a subclass's own loss
            return super().loss_grad(out, y)
        return mse_grad(out, y)

    def predict(self, X: Tensor) -> Tensor:
        """Predictions (N, out_dim)."""
        return self._eval_out(X, 8192)

    def metric_tensors(self, out: Tensor, y: Tensor) -> dict[str, Tensor]:
        """MSE, SSE and SST (around each target's mean) of the predictions `out`, in float64."""
        y = y.view_as(out)
        err = (out - y).double()
        return {"mse": err.pow(2).mean(), "sse": err.pow(2).sum(),
                "sst": (y.double() - y.double().mean(0)).pow(2).sum()}

    def metric_values(self, values: dict[str, float]) -> dict[str, float]:
        """{"loss", "mse", "rmse", "r2"} (`evaluate`'s) from MSE, SSE and SST: R^2 = 1 - SSE /
        SST over all targets, nan when SST is 0."""
        m, sse, sst = values["mse"], values["sse"], values["sst"]
        r2 = 1.0 - sse / sst if sst > 0 else float("nan")
        return {"loss": m, "mse": m, "rmse": math.sqrt(m), "r2": r2}
