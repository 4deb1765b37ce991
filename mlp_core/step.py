"""A training step (forward, loss, backward, SGD update): straight-line code where it can run."""

from __future__ import annotations

import operator
from typing import Any

from torch import Tensor

from mlp_core.flat import FlatGrads
from mlp_core.model import MLP, MLPClassifier, MLPRegressor
from mlp_core.optim import SGD, _One, _Optimizer
from mlp_core.scalars import scalar
from mlp_core.straight import compiled


class TrainStep:
    """`step(X, y, need_loss)`: one training step of `model` under `opt`, the gradients written
    into `grads` (a `model.new_grads()`); returns the batch's loss as a 0-d tensor where
    need_loss, else None.

    The layered path runs `model.forward(X, train=True)`, `loss_and_grad` (or `loss_grad`),
    `model.backward(..., out=grads)` and `opt.step(grads)`. Where that path is a plain net and
    plain SGD (an `MLPClassifier` or `MLPRegressor` whose class keeps our forward, backward and
    losses; no BatchNorm, no dropout; SGD without weight decay or Nesterov, its momentum buffer
    allocated) the same kernels run as one function over tensors bound once,
    `straight.plain_step`, compiled by TorchScript where that gives its bits
    (`straight.compiled`): on the [128, 128] digits step at batch 64 the layered path's Python
    (function calls, views, checks) costs a third more than straight-line code, and the
    function run as Python ~1.2x its compiled form. It differs from the layered path in two
    ways:
      - ReLU, tanh and sigmoid run in place: their backward reads the output.
      - On the CPU an output layer narrower than 16 is computed transposed, W^T h^T, and its
        loss, gradient and backward stay transposed: MKL's kernel for a result 10 wide is ~3x
        slower (`layers._narrow`). Its numbers differ from the layered path's by float
        round-off (tests/test_step.py); everything else is the same kernels, bit for bit.
    Then the optimizer's own rule (`_update`) on the flat buffers it bound.
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
        # compiled (and checked) once a process, here rather than inside the first epoch
        self.fn, self.is_compiled = compiled() if self.possible else (None, False)
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
        P, G = m.params, dict(zip(m.params, g.views, strict=True))
        Ws, bs = [P[W] for W, _ in m._fc], [P[b] for _, b in m._fc]
        W = Ws[-1]
        transposed = W.shape[1] < 16 and W.device.type == "cpu"
        # plain_step's arguments but the batch and the last three
        args = (Ws, [*bs[:-1], bs[-1].view(-1, 1)] if transposed else bs, [W.t() for W in Ws],
                [G[W] for W, _ in m._fc], [G[b] for _, b in m._fc], m.activation,
                self.task is MLPClassifier, transposed)
        return (params, o.momentum_buffer, m.activation, args, fused)

    def _current(self) -> tuple[Any, ...] | None:
        """The bound tensors while they are still the model's and the optimizer's; bound
        again when not (None where no straight-line step can run)."""
        b, m, o = self._bound, self.model, self.opt
        if b is not None and o.momentum_buffer is b[1] and (b[1] is not None or o.momentum == 0) \
                and not o.nesterov and o.weight_decay == 0 and not m.dropout \
                and m.activation == b[2] and len(m.params) == len(b[0]) \
                and all(map(operator.is_, m.params.values(), b[0])):
            return b
        self._bound = b = self._bind()
        return b

    # ------------------------------------------------------------ the step
    def __call__(self, X: Tensor, y: Tensor, need_loss: bool = False) -> Tensor | None:
        bound = self._current() if self.possible else None
        if bound is None or X.shape[0] == 0:
            return self._layered(X, y, need_loss)
        n = X.shape[0]
        # the loss's factors: 1 / N for cross-entropy, 2 / numel for MSE; -1 / N
        scale = scalar(1.0 / n if self.task is MLPClassifier else 2.0 / y.numel(), X)
        loss = self.fn(X, y, *bound[3], need_loss, scale, scalar(-1.0 / n, X))
        # the optimizer's rule on its flat buffers, as `opt.step` runs it (without finding
        # them again: bound above)
        o = self.opt
        o.step_count += 1
        o._update(*bound[4], _One)
        return loss

    def _layered(self, X: Tensor, y: Tensor, need_loss: bool) -> Tensor | None:
        """The step through the model's and the optimizer's own methods."""
        m = self.model
        out, cache = m.forward(X, train=True)
        loss, dout = m.loss_and_grad(out, y) if need_loss else (None, m.loss_grad(out, y))
        self.opt.step(m.backward(dout, cache, out=self.grads))
        return loss
