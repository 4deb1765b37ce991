"""SGD and Adam with torch.optim's exact update rules, plus per-epoch learning-rate schedules."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import torch
from torch import Tensor

from mlp_core.flat import FlatGrads, flat_view, zeros_packed
from mlp_core.scalars import scalar as _scalar

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")


def _real(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
          low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a float, or ValueError unless it is a finite number in the given interval."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class _Each:
    """The update rules' operations on lists of tensors, one per param: `torch._foreach_*`."""

    add = staticmethod(torch._foreach_add)
    add_ = staticmethod(torch._foreach_add_)
    addcdiv_ = staticmethod(torch._foreach_addcdiv_)
    addcmul_ = staticmethod(torch._foreach_addcmul_)
    copy_ = staticmethod(torch._foreach_copy_)
    div_ = staticmethod(torch._foreach_div_)
    lerp_ = staticmethod(torch._foreach_lerp_)
    mul_ = staticmethod(torch._foreach_mul_)
    sqrt = staticmethod(torch._foreach_sqrt)


def _first(x: Any) -> Any:
    """The tensor of a one-tensor list; a scalar as it is."""
    return x[0] if isinstance(x, list) else x


class _One:
    """The same operations on lists of one tensor (the flat buffers) as that tensor's own op:
    what the CPU's `_foreach_*` runs for each tensor, so the same bits, without its ~3 us of
    overhead a call (SGD with momentum: 23 -> 14 us an update of a [128, 128] net)."""

    @staticmethod
    def add(a: list[Tensor], b: list[Tensor], alpha: float = 1) -> list[Tensor]:
        return [torch.add(a[0], b[0], alpha=alpha)]

    @staticmethod
    def add_(a: list[Tensor], b: Any, alpha: float = 1) -> None:
        a[0].add_(_first(b), alpha=alpha)

    @staticmethod
    def addcdiv_(a: list[Tensor], b: list[Tensor], c: list[Tensor], value: float) -> None:
        a[0].addcdiv_(b[0], c[0], value=value)

    @staticmethod
    def addcmul_(a: list[Tensor], b: list[Tensor], c: list[Tensor], value: float) -> None:
        a[0].addcmul_(b[0], c[0], value=value)

    @staticmethod
    def copy_(a: list[Tensor], b: list[Tensor]) -> None:
        a[0].copy_(b[0])

    @staticmethod
    def div_(a: list[Tensor], b: Any) -> None:
        a[0].div_(_first(b))

    @staticmethod
    def lerp_(a: list[Tensor], b: list[Tensor], weight: float) -> None:
        a[0].lerp_(b[0], weight)

    @staticmethod
    def mul_(a: list[Tensor], b: Any) -> None:
        a[0].mul_(_first(b))

    @staticmethod
    def sqrt(a: list[Tensor]) -> list[Tensor]:
        return [torch.sqrt(a[0])]


class _Optimizer:
    """Shared plumbing: fixed name order, gathering grads, checkpointing state and hyperparameters.

    The optimizer keeps the `params` dict itself and reads its tensors at every step (in the
    name order fixed here), so a tensor swapped into the dict is the one updated.

    Where the params are views of one buffer in name order (an `MLP`'s are; `mlp_core.flat`)
    the optimizer's own buffers are laid out alike, and a step runs each operation of the rule
    once on the whole buffer instead of once per tensor (`torch._foreach_*` on the CPU is a
    loop of per-tensor kernels): the same arithmetic per element, far fewer kernels. That needs
    the gradients in one buffer too: `MLP.backward(..., out=model.new_grads())` (`FlatGrads`).
    """

    kind = ""
    hyperparams: tuple[str, ...] = ()  # attributes saved in state_dict and validated
    buffers: tuple[str, ...] = ()  # attributes holding list[Tensor] (or None before the 1st step)

    def __init__(self, params: Mapping[str, Tensor]) -> None:
        if not isinstance(params, Mapping) or len(params) == 0:
            raise ValueError("params must be a non-empty dict of name -> tensor")
        for name, p in params.items():
            if not isinstance(p, Tensor) or not p.is_floating_point():
                raise ValueError(f"param {name!r} must be a floating-point tensor")
        self.params = params
        self.names = tuple(params)
        self.step_count = 0
        # the params the flat view was found for (found again when a tensor is swapped in) and
        # the view; and each buffer list with its flat view
        self._flat_of: tuple[tuple[Tensor, ...], Tensor | None] = ((), None)
        self._flat_bufs: dict[str, tuple[list[Tensor], Tensor | None]] = {}
        self._views_ok: list[Tensor] | None = None  # the FlatGrads views last found laid out alike
        # the last fused step: (grads, its views, the params, {buffer attribute: list}, the
        # flat lists `_update` took); the next step with the same objects skips `_fused`
        self._last: tuple | None = None

    def _params_flat(self, params: list[Tensor]) -> Tensor | None:
        """The one buffer `params` tile (`flat_view`), found again only when a tensor changed."""
        seen, flat = self._flat_of
        if len(seen) != len(params) or any(a is not b for a, b in zip(seen, params, strict=True)):
            flat = flat_view(params)
            self._flat_of = (tuple(params), flat)
            self._views_ok = None
        return flat

    def _new_buffer(self, params: list[Tensor]) -> list[Tensor]:
        """Zeroed tensors shaped like `params`: views of one buffer when the params are."""
        if self._params_flat(params) is not None:
            return zeros_packed(params)[1]
        return [torch.zeros_like(p) for p in params]

    def _buffer_flat(self, key: str) -> Tensor | None:
        """The one buffer the list attribute `key` tiles, found again when the list changed."""
        bufs = getattr(self, key)
        seen, flat = self._flat_bufs.get(key, (None, None))
        if seen is not bufs:
            flat = flat_view(bufs)
            self._flat_bufs[key] = (bufs, flat)
        return flat

    def _fused(self, params: list[Tensor], g: list[Tensor],
               grads: Mapping[str, Tensor]) -> tuple[list[Tensor], list[Tensor],
                                                      dict[str, list[Tensor]]] | None:
        """([params], [grads], {key: [buffer]}) as one flat tensor each, or None unless the
        params, the buffers and the gradients (a `FlatGrads` as `MLP.backward` made it) are each
        one buffer laid out alike."""
        P = self._params_flat(params)
        if P is None or not isinstance(grads, FlatGrads) or len(grads.views) != len(g) \
                or not all(a is b for a, b in zip(g, grads.views, strict=True)):
            return None
        if grads.views is not self._views_ok:  # laid out like the params (once per buffer)
            if grads.flat.dtype != P.dtype or [t.shape for t in g] != [p.shape for p in params]:
                return None
            self._views_ok = grads.views
        bufs = {}
        for key in self.buffers:
            if getattr(self, key) is None:  # allocated from the gradients in this step
                bufs[key] = None
                continue
            B = self._buffer_flat(key)
            if B is None or B.numel() != P.numel():
                return None
            bufs[key] = [B]
        return [P], [grads.flat], bufs

    def _validate(self) -> None:
        raise NotImplementedError

    def _update(self, params: list[Tensor], grads: list[Tensor],
                bufs: dict[str, list[Tensor] | None], ops: type = _Each) -> None:
        """The rule on `params` from `grads` with the buffers `bufs` (by attribute name):
        per tensor, or each a list of one flat tensor, with `ops` the operations on such lists
        (`_Each`, `_One`). A buffer still None is allocated here and set on self (as one tensor
        per param, views of one buffer where the params are)."""
        raise NotImplementedError

    def step(self, grads: Mapping[str, Tensor]) -> None:
        """One update of every param in place from `grads` (same keys as params)."""
        if self._same_as_last(grads):  # a training loop's every step after the first two
            self.step_count += 1
            self._update(*self._last[4], _One)
            return
        if len(grads) != len(self.names):
            raise KeyError(f"grads has keys {sorted(grads)}, expected {sorted(self.names)}")
        try:
            params = [self.params[n] for n in self.names]
            g = [grads[n] for n in self.names]
        except KeyError as err:
            raise KeyError(f"no gradient or param named {err.args[0]!r}") from None
        self.step_count += 1
        if torch.is_inference_mode_enabled():
            self._run(params, g, grads)
        else:  # buffers may be inference tensors: update them where that is allowed
            with torch.inference_mode():
                self._run(params, g, grads)

    def _run(self, params: list[Tensor], g: list[Tensor], grads: Mapping[str, Tensor]) -> None:
        """One update, on the flat buffers where there are some (`_fused`)."""
        fused = self._fused(params, g, grads)
        if fused is None:
            self._last = None
            self._update(params, g, {key: getattr(self, key) for key in self.buffers}, _Each)
            return
        # the buffer lists as they were: one still None that the update allocates is not the
        # same object next step, which then takes this path again and finds the new buffer
        before = {key: getattr(self, key) for key in self.buffers}
        self._update(*fused, _One)
        self._last = (grads, grads.views, tuple(params), before, fused)

    def _same_as_last(self, grads: Mapping[str, Tensor]) -> bool:
        """Whether this step's tensors are the last fused step's, every one the same object:
        the same FlatGrads holding its own views, the same params in the dict, the same
        buffer lists (and inside inference mode, where the last one ran)."""
        last = self._last
        if last is None or grads is not last[0] or grads.views is not last[1] \
                or len(grads) != len(last[1]) or not torch.is_inference_mode_enabled():
            return False
        P = self.params
        return (all(map(operator.is_, grads.values(), last[1]))
                and all(map(operator.is_, map(P.__getitem__, self.names), last[2]))
                and all(getattr(self, key) is b for key, b in last[3].items()))

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, step count and copies of the buffers (torch.load weights_only-safe)."""
        state = {}
        for key in self.buffers:
            bufs = getattr(self, key)
            state[key] = None if bufs is None else {
                n: b.clone() for n, b in zip(self.names, bufs, strict=True)}
        return {"optimizer": self.kind, "names": list(self.names), "step": self.step_count,
                "hyperparams": {k: getattr(self, k) for k in self.hyperparams}, "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what state_dict() saved; continuing then matches never having stopped."""
        if state_dict.get("optimizer") != self.kind:
            raise ValueError(f"state is for optimizer {state_dict.get('optimizer')!r}, "
                             f"not {self.kind!r}")
        if list(state_dict["names"]) != list(self.names):
            raise ValueError(f"state has params {list(state_dict['names'])}, "
                             f"optimizer has {list(self.names)}")
        hp = state_dict["hyperparams"]
        if set(hp) != set(self.hyperparams):
            raise ValueError(f"state hyperparams {sorted(hp)} != {sorted(self.hyperparams)}")
        old = {k: getattr(self, k) for k in self.hyperparams}
        for k in self.hyperparams:
            setattr(self, k, hp[k])
        try:
            self._validate()
        except ValueError:
            for k, v in old.items():
                setattr(self, k, v)
            raise
        params = [self.params[n] for n in self.names]
        for key in self.buffers:
            saved = state_dict["state"][key]
            if saved is None:
                setattr(self, key, None)
                continue
            for n, p in zip(self.names, params, strict=True):
                if saved[n].shape != p.shape:
                    raise ValueError(f"{key}[{n!r}] has shape {tuple(saved[n].shape)}, "
                                     f"param has {tuple(p.shape)}")
            with torch.inference_mode():
                bufs = getattr(self, key) or self._new_buffer(params)
                for n, b in zip(self.names, bufs, strict=True):
                    b.copy_(saved[n])
            setattr(self, key, bufs)
        self.step_count = _integer("step", state_dict["step"], 0)


class SGD(_Optimizer):
    """torch.optim.SGD: g += wd*p; b = g (1st step) else mu*b + (1-dampening)*g;
    g = g + mu*b (Nesterov) or b; p -= lr*g."""

    kind = "sgd"
    hyperparams = ("lr", "momentum", "dampening", "nesterov", "weight_decay")
    buffers = ("momentum_buffer",)

    def __init__(self, params: Mapping[str, Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 dampening: float = 0.0) -> None:
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay
        self._validate()
        self.momentum_buffer: list[Tensor] | None = None  # allocated on the first momentum step

    def _validate(self) -> None:
        self.lr = _real("lr", self.lr, low=0.0)
        # momentum >= 1 never forgets a gradient (the buffer grows without bound): refused
        self.momentum = _real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        self.dampening = _real("dampening", self.dampening, low=0.0, high=1.0)
        self.weight_decay = _real("weight_decay", self.weight_decay, low=0.0)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be a bool, got {self.nesterov!r}")
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")

    def _update(self, params: list[Tensor], g: list[Tensor],
                bufs: dict[str, list[Tensor] | None], ops: type = _Each) -> None:
        if ops is _One and self.momentum != 0 and bufs["momentum_buffer"] is not None \
                and _one_kernel_sgd(params[0].dtype, params[0].device, self.nesterov,
                                    self.weight_decay != 0, self.dampening != 0):
            # the whole rule in one pass over the flat buffers (three kernels below): the same
            # bits, checked for this dtype, device and form of the rule
            torch._fused_sgd_(params, g, bufs["momentum_buffer"], weight_decay=self.weight_decay,
                              momentum=self.momentum, lr=self.lr, dampening=self.dampening,
                              nesterov=self.nesterov, maximize=False, is_first_step=False)
            return
        if self.weight_decay != 0:
            g = ops.add(g, params, alpha=self.weight_decay)
        if self.momentum != 0:
            bufs = bufs["momentum_buffer"]
            if bufs is None:  # the first step: b = g
                each, flat = self._flat_of  # the params as tensors, their one buffer
                if flat is None:
                    self.momentum_buffer = bufs = [t.clone() for t in g]
                else:  # laid out like the params; the fused step works on its whole buffer
                    self.momentum_buffer = self._new_buffer(list(each))
                    bufs = ([self._buffer_flat("momentum_buffer")] if params[0] is flat
                            else self.momentum_buffer)
                    ops.copy_(bufs, g)
            else:
                ops.mul_(bufs, _scalar(self.momentum, bufs[0]))
                ops.add_(bufs, g, alpha=1 - self.dampening)
            # out of place: g may be the caller's grads
            g = ops.add(g, bufs, alpha=self.momentum) if self.nesterov else bufs
        ops.add_(params, g, alpha=-self.lr)


@functools.lru_cache(maxsize=64)
def _one_kernel_sgd(dtype: torch.dtype, device: torch.device, nesterov: bool, decay: bool,
                    damp: bool, n: int = 4096) -> bool:
    """Whether `torch._fused_sgd_` (SGD with momentum in one pass over params, gradients and
    buffer: 27 -> 20 us an update of the [128, 128] digits net, ~0.99x of its epoch, against
    the rule's three kernels) gives the rule's own bits (`SGD._update` per tensor) for this
    dtype, device and form of the rule, and leaves the gradients alone. Checked once a
    process on random buffers `n` long, a whole number of 64-byte lines like
    `mlp_core.flat`'s: the kernel's vector loop rounds as the three kernels do on this build,
    its scalar tail (never run on a flat buffer) does not. False where the kernel is missing
    or differs."""
    kernel = getattr(torch, "_fused_sgd_", None)
    if kernel is None:
        return False
    kw = {"lr": 0.05, "momentum": 0.9, "nesterov": nesterov,
          "weight_decay": 1e-2 if decay else 0.0, "dampening": 0.25 if damp and not nesterov else 0.0}
    gen = torch.Generator().manual_seed(0)

    def rand() -> Tensor:  # magnitudes over several decades
        x = torch.randn(n, generator=gen, dtype=torch.float64)
        return (x * 10.0 ** torch.randint(-4, 3, (n,), generator=gen)).to(dtype).to(device)

    try:
        with torch.inference_mode():
            p, b = rand(), rand()
            ours, p2, b2 = SGD({"p": p}, **kw), p.clone(), b.clone()
            for _ in range(3):
                g = rand()
                g2 = g.clone()
                ours._update([p], [g], {"momentum_buffer": [b]}, _Each)
                kernel([p2], [g2], [b2], maximize=False, is_first_step=False, **kw)
                if not (torch.equal(p, p2) and torch.equal(b, b2) and torch.equal(g, g2)):
                    return False
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    return True


class Adam(_Optimizer):
    """torch.optim.Adam (coupled weight decay, no amsgrad): m, v moments with bias corrections."""

    kind = "adam"
    hyperparams = ("lr", "betas", "eps", "weight_decay")
    buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Mapping[str, Tensor], lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self._validate()
        ps = list(self.params.values())
        self.exp_avg: list[Tensor] = self._new_buffer(ps)
        self.exp_avg_sq: list[Tensor] = self._new_buffer(ps)

    def _validate(self) -> None:
        self.lr = _real("lr", self.lr, low=0.0)
        if isinstance(self.betas, str | bytes) or not isinstance(self.betas, Sequence) \
                or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        self.betas = tuple(_real(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True)
                           for i, b in enumerate(self.betas))
        self.eps = _real("eps", self.eps, low=0.0, low_open=True)
        self.weight_decay = _real("weight_decay", self.weight_decay, low=0.0)

    def _update(self, params: list[Tensor], g: list[Tensor],
                bufs: dict[str, list[Tensor] | None], ops: type = _Each) -> None:
        beta1, beta2 = self.betas
        exp_avg, exp_avg_sq = bufs["exp_avg"], bufs["exp_avg_sq"]
        if self.weight_decay != 0:
            g = ops.add(g, params, alpha=self.weight_decay)
        ops.lerp_(exp_avg, g, 1 - beta1)  # m = beta1*m + (1-beta1)*g
        ops.mul_(exp_avg_sq, beta2)  # v = beta2*v + (1-beta2)*g*g
        ops.addcmul_(exp_avg_sq, g, g, 1 - beta2)
        # p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps), in torch's operation order
        t = float(self.step_count)
        step_size = self.lr / (1 - beta1**t)
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        denom = ops.sqrt(exp_avg_sq)
        ops.div_(denom, bias_correction2_sqrt)
        ops.add_(denom, self.eps)
        ops.addcdiv_(params, exp_avg, denom, -step_size)


_OPTIONS = {"sgd": (SGD, ("lr", "momentum", "nesterov", "weight_decay", "dampening")),
            "adam": (Adam, ("lr", "betas", "eps", "weight_decay"))}


def make_optimizer(name: str, params: Mapping[str, Tensor], **kwargs: Any) -> SGD | Adam:
    """SGD or Adam by name ("sgd" | "adam"); an option the optimizer lacks is a ValueError."""
    key = str(getattr(name, "value", name)).lower()  # also takes an Enum member
    if key not in _OPTIONS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    cls, allowed = _OPTIONS[key]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"optimizer {key!r} has no option(s) {unknown}; allowed: {allowed}")
    if key == "sgd" and "lr" not in kwargs:
        raise ValueError("optimizer 'sgd' needs lr")
    return cls(params, **kwargs)


@dataclass
class LRSchedule:
    """Per-epoch lr: a linear warmup over the first `warmup_epochs`, then `kind` on the rest.

    Epochs are 1-based (epoch 0 = initialization, no steps). With W = warmup_epochs and
    e = epoch - W the post-warmup epoch:
      warmup (epoch <= W): base_lr * epoch / W  (so epoch 0 reports 0.0)
      constant: base_lr
      step:     base_lr * gamma ** ((e - 1) // step_size)            (torch StepLR)
      cosine:   min_lr + (base_lr - min_lr) * (1 + cos(pi * (e - 1) / (epochs - W))) / 2
                (torch CosineAnnealingLR with T_max = epochs - W; held at min_lr past the end)
    """

    base_lr: float
    epochs: int
    kind: str = "constant"
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        self.kind = str(getattr(self.kind, "value", self.kind))  # also takes an Enum member
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {SCHEDULES}")
        self.base_lr = _real("base_lr", self.base_lr, low=0.0)
        self.epochs = _integer("epochs", self.epochs, 0)
        self.step_size = _integer("step_size", self.step_size, 1)
        self.gamma = _real("gamma", self.gamma, low=0.0, low_open=True)
        self.min_lr = _real("min_lr", self.min_lr, low=0.0)
        if self.kind == "cosine" and self.min_lr > self.base_lr:
            raise ValueError(f"min_lr ({self.min_lr}) must be <= base_lr ({self.base_lr})")
        self.warmup_epochs = _integer("warmup_epochs", self.warmup_epochs, 0)
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be <= epochs "
                             f"({self.epochs})")

    def lr_at(self, epoch: int) -> float:
        """The lr for every step of `epoch` (1-based; 0 = before training)."""
        epoch = _integer("epoch", epoch, 0)
        w = self.warmup_epochs
        if epoch <= w:
            return self.base_lr * epoch / w if w else self.base_lr  # no warmup: epoch 0 = base
        e = epoch - w
        if self.kind == "constant":
            return self.base_lr
        if self.kind == "step":
            return self.base_lr * self.gamma ** ((e - 1) // self.step_size)
        t_max = self.epochs - w
        if e > t_max:
            return self.min_lr
        cos = 1 + math.cos(math.pi * (e - 1) / t_max)
        return self.min_lr + (self.base_lr - self.min_lr) * cos / 2
