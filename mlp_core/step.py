"""A training step (forward, loss, backward, SGD update) as straight-line tensor ops."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

from mlp_core.flat import FlatGrads
from mlp_core.layers import act_backward, act_forward, linear_backward
from mlp_core.model import MLP, MLPClassifier, MLPRegressor
from mlp_core.optim import SGD, _One, _Optimizer
from mlp_core.scalars import scalar

_relu_backward = torch.ops.aten.threshold_backward.grad_input


class TrainStep:
    """`step(X, y, need_loss)`: one training step of `model` under `opt`, the gradients written
    into `grads` (a `model.new_grads()`); returns the batch's loss as a 0-d tensor where
    need_loss, else None.

    The layered path runs `model.forward(X, train=True)`, `loss_and_grad` (or `loss_grad`),
    `model.backward(..., out=grads)` and `opt.step(grads)`. Where that path is a plain net and
    plain SGD (an `MLPClassifier` or `MLPRegressor` whose class keeps our forward, backward and
    losses; no BatchNorm, no dropout; SGD without weight decay or Nesterov, its momentum buffer
    allocated) the same kernels run here as straight-line code over tensors bound once: on
    the [128, 128] digits step at batch 64 the layered path's Python (function calls, views,
    checks) costs a third more than this. The differences:
      - ReLU in place: its backward reads the output (z > 0 exactly where relu(z) > 0).
      - On the CPU an output layer narrower than 16 is computed transposed, W^T h^T, and its
        loss, gradient and backward stay transposed: MKL's kernel for a result 10 wide is ~3x
        slower (`layers._narrow`). Its numbers differ from the layered path's by float
        round-off (tests/test_step.py); everything else is the same kernels, bit for bit.
    Each call first checks that the tensors it bound are still the model's and the
    optimizer's (a param swapped into the dict, a buffer allocated or replaced, a
    hyperparameter changed) and binds them again, or takes the layered path.
    """

    def __init__(self, model: MLP, opt: _Optimizer, grads: FlatGrads) -> None:
        self.model, self.opt, self.grads = model, opt, grads
        cls = type(model)
        own = {(c.loss_and_grad, c.loss_grad): c for c in (MLPClassifier, MLPRegressor)}
        self.task = own.get((cls.loss_and_grad, cls.loss_grad))
        # what cannot change after construction: classes, the task, BatchNorm
        self.possible = (isinstance(opt, SGD) and self.task is not None
                         and not model.batchnorm and cls.forward is MLP.forward
                         and cls.forward_from is MLP.forward_from and cls.backward is MLP.backward)
        self._bound: tuple[Any, ...] | None = None

    # ------------------------------------------------------------ binding
    def _bind(self) -> tuple[Any, ...] | None:
        """The tensors of a straight-line step, or None where this step cannot run one."""
        m, o, g = self.model, self.opt, self.grads
        if not self.possible or m.dropout > 0 or o.nesterov or o.weight_decay != 0 \
                or o.params is not m.params or not isinstance(g, FlatGrads):
            return None
        params = tuple(m.params.values())
        if list(g) != list(m.params):
            return None
        # the optimizer's own flat lists (None unless params, gradients and buffers are each
        # one buffer laid out alike), which its `_update` takes as `opt.step` gives them
        fused = o._fused(list(params), list(g.views), g)
        if fused is None or (o.momentum != 0 and o.momentum_buffer is None):
            return None  # the first momentum step (b = g) allocates: the optimizer's own
        views = dict(zip(m.params, g.views, strict=True))
        P = m.params
        layers = [(P[W], P[b], views[W], views[b], P[W].t()) for W, b in m._fc]
        W, b, gW, gb, Wt = layers[-1]
        transposed = W.shape[1] < 16 and W.device.type == "cpu"
        head = (W, b.view(-1, 1) if transposed else b, gW, gb, Wt, transposed)
        return (params, o.momentum_buffer, layers[:-1], head, fused)

    def _current(self) -> tuple[Any, ...] | None:
        """The bound tensors while they are still the model's and the optimizer's; bound
        again when not (None where no straight-line step can run)."""
        b, m, o = self._bound, self.model, self.opt
        if b is not None and o.momentum_buffer is b[1] and (b[1] is not None or o.momentum == 0) \
                and not o.nesterov and o.weight_decay == 0 and not m.dropout \
                and len(m.params) == len(b[0]) and all(map(operator.is_, m.params.values(), b[0])):
            return b
        self._bound = b = self._bind()
        return b

    # ------------------------------------------------------------ the step
    def __call__(self, X: Tensor, y: Tensor, need_loss: bool = False) -> Tensor | None:
        bound = self._current() if self.possible else None
        if bound is None:
            return self._layered(X, y, need_loss)
        _, _, hidden, head, fused = bound
        m, o = self.model, self.opt
        act = m.activation
        relu = act == "relu"
        # forward: hs[i] is layer i's input
        hs, pre = [X], []
        h = X
        for W, b, _, _, _ in hidden:
            z = torch.addmm(b, h, W)
            if relu:
                h = z.relu_()
            else:
                pre.append(z)
                h = act_forward(act, z)
            hs.append(h)
        W, b, gW, gb, Wt, transposed = head
        loss = None
        if transposed:  # d: dloss/dout transposed, (out_dim, N), contiguous
            loss, d = self._loss_grad_t(torch.addmm(b, Wt, h.t()), y, need_loss)
            gW.copy_(d.mm(h).t())
            torch.sum(d, 1, out=gb)
            dh = torch.mm(d.t(), Wt) if hidden else None
        else:
            out = torch.addmm(b, h, W)
            loss, d = m.loss_and_grad(out, y) if need_loss else (None, m.loss_grad(out, y))
            dh = linear_backward(d, h, W, need_dh=bool(hidden), out=(gW, gb))[0]
        for i in range(len(hidden) - 1, -1, -1):
            h = hs[i + 1]  # layer i's output
            if relu:
                dz = _relu_backward(dh, h, 0, grad_input=dh)
            else:
                dz = act_backward(act, dh, pre[i], h, True)
            W, b, gW, gb, Wt = hidden[i]
            h = hs[i]
            if W.shape[1] < 16:  # possibly narrow: the layered path's rule
                dh = linear_backward(dz, h, W, need_dh=i > 0, out=(gW, gb))[0]
                continue
            torch.mm(h.t(), dz, out=gW)
            torch.sum(dz, 0, out=gb)
            if i:
                dh = dz.mm(Wt)
        # the optimizer's rule on its flat buffers, as `opt.step` runs it (without finding
        # them again: bound above)
        o.step_count += 1
        o._update(*fused, _One)
        return loss

    def _loss_grad_t(self, out_t: Tensor, y: Tensor, need_loss: bool) -> tuple[Tensor | None, Tensor]:
        """The task's loss and d loss / d out from the transposed outputs (out_dim, N), the
        gradient transposed too (written over out_t): `losses.py`'s computations along the
        other dim."""
        n = out_t.shape[1]
        if self.task is MLPClassifier:
            logp = torch.log_softmax(out_t, 0)
            yr = y.view(1, -1)
            loss = logp.gather(0, yr).sum().mul_(scalar(-1.0 / n, logp)) if need_loss else None
            d = logp.exp_().mul_(scalar(1.0 / n, logp))  # softmax / N
            return loss, d.scatter_(0, yr, -1.0 / n, reduce="add")  # - onehot / N
        diff = out_t - y.view(n, -1).t()
        loss = (diff * diff).mean() if need_loss else None
        return loss, diff.mul_(scalar(2.0 / diff.numel(), diff))

    def _layered(self, X: Tensor, y: Tensor, need_loss: bool) -> Tensor | None:
        """The step through the model's and the optimizer's own methods."""
        m = self.model
        out, cache = m.forward(X, train=True)
        loss, dout = m.loss_and_grad(out, y) if need_loss else (None, m.loss_grad(out, y))
        self.opt.step(m.backward(dout, cache, out=self.grads))
        return loss
