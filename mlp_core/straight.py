"""A plain net's forward, loss and backward as one function of tensors, compiled where that is the same.

No `from __future__ import annotations` here: TorchScript reads the annotations of the
functions it calls as Python (`torch.jit.ignore`) only as real types."""

import functools
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from mlp_core.layers import act_backward, act_forward, linear_backward

OWN_ACTS = ("relu", "tanh", "sigmoid")  # written out here, in place: their backward reads the output


@torch.jit.ignore
def _act_forward(act: str, z: Tensor) -> Tensor:
    """`layers.act_forward`, called as Python from the compiled function."""
    return act_forward(act, z)


@torch.jit.ignore
def _act_backward(act: str, dout: Tensor, z: Tensor, out: Tensor) -> Tensor:
    """`layers.act_backward` (in place into dout where it can), called as Python from the
    compiled function."""
    return act_backward(act, dout, z, out, True)


def plain_step(X: Tensor, y: Tensor, Ws: list[Tensor], bs: list[Tensor], Wts: list[Tensor],
               gWs: list[Tensor], gbs: list[Tensor], act: str, classify: bool,
               transposed: bool, need_loss: bool, scale: Tensor,
               neg_inv_n: Tensor) -> Tensor | None:
    """One step's forward, loss and backward of a plain net (Linear layers `Ws`, `bs`, `Wts`
    the W's transposed views; the activation `act` between them, none after the last):
    writes d loss / d W and d loss / d b into `gWs`, `gbs` and returns the batch-mean loss
    (softmax cross-entropy of int labels where `classify`, else MSE) where need_loss, else
    None.
    `bs[-1]` is the last bias as a column (out, 1) where `transposed`. The loss's factors come
    as 0-d tensors of X's dtype (`scalars.scalar`: a float would be wrapped in a new tensor by
    each kernel): `scale` 1 / N (cross-entropy) or 2 / numel (MSE), `neg_inv_n` -1 / N.

    The kernels of the layered path (`MLP.forward`, `losses.py`, `MLP.backward`), in place
    where the layered path makes a copy: ReLU, tanh and sigmoid (OWN_ACTS) write over their
    pre-activation and their backward over the incoming gradient; the others (their backward
    reads the pre-activation) are `layers.py`'s, called as Python. `transposed` (the last
    layer narrow, on the CPU): that layer computed as W^T h^T, its loss and gradient along
    dim 0, and its backward from there (MKL's kernel for a result 10 wide is ~3x slower;
    `layers._narrow`); its numbers then differ from the layered path's by float round-off,
    the rest are the same bits.
    Written in the Python that TorchScript compiles (`compiled`), so one body runs either way.
    """
    n = X.shape[0]
    last = len(Ws) - 1
    hs = [X]  # hs[i]: layer i's input; a hidden layer's output is the next one's input
    zs: list[Tensor] = []  # pre-activations, kept for activations not in OWN_ACTS
    h = X
    for i in range(last):
        z = torch.addmm(bs[i], h, Ws[i])
        if act == "relu":
            h = z.relu_()
        elif act == "tanh":
            h = z.tanh_()
        elif act == "sigmoid":
            h = z.sigmoid_()
        else:
            zs.append(z)
            h = _act_forward(act, z)
        hs.append(h)
    # the loss along `dim` of the outputs (N, out) or, transposed, (out, N)
    if transposed:
        out = torch.addmm(bs[last], Wts[last], h.t())
        dim = 0
        yv = y.view(1, -1) if classify else y.view(n, -1).t()
    else:
        out = torch.addmm(bs[last], h, Ws[last])
        dim = 1
        yv = y.view(-1, 1) if classify else y.view_as(out)
    loss: Tensor | None = None
    if classify:  # losses.softmax_cross_entropy: (softmax - onehot) / N
        logp = torch.log_softmax(out, dim)
        if need_loss:
            loss = logp.gather(dim, yv).sum().mul_(neg_inv_n)
        d = logp.exp_().mul_(scale)
        d.scatter_(dim, yv, -1.0 / n, reduce="add")
    else:  # losses.mse: 2 (pred - y) / numel
        d = out - yv
        if need_loss:
            loss = (d * d).mean()
        d.mul_(scale)
    # backward: the last layer, then each hidden layer's activation and Linear
    if transposed:
        gWs[last].copy_(d.mm(h).t())
        torch.sum(d, [1], out=gbs[last])
        dh = torch.mm(d.t(), Wts[last]) if last > 0 else d  # d: not read
    else:
        dh = d  # no hidden layer: not read
        r = linear_backward(d, h, Ws[last], last > 0, (gWs[last], gbs[last]))[0]
        if r is not None:
            dh = r
    for j in range(last):
        i = last - 1 - j
        out_i = hs[i + 1]
        if act == "relu":  # dout * (out > 0)
            dz = torch.ops.aten.threshold_backward(dh, out_i, 0.0, grad_input=dh)
        elif act == "tanh":  # dout * (1 - out^2)
            dz = torch.ops.aten.tanh_backward(dh, out_i, grad_input=dh)
        elif act == "sigmoid":  # dout * out (1 - out)
            dz = torch.ops.aten.sigmoid_backward(dh, out_i, grad_input=dh)
        else:
            dz = _act_backward(act, dh, zs[i], out_i)
        h = hs[i]
        if Ws[i].shape[1] < 16:  # possibly narrow: the layered path's rule
            r = linear_backward(dz, h, Ws[i], i > 0, (gWs[i], gbs[i]))[0]
            if r is not None:
                dh = r
        else:
            torch.mm(h.t(), dz, out=gWs[i])
            torch.sum(dz, [0], out=gbs[i])
            if i > 0:
                dh = dz.mm(Wts[i])
    return loss


_get_optimize = getattr(torch._C, "_get_graph_executor_optimize", None)
_set_optimize = getattr(torch._C, "_set_graph_executor_optimize", None)


def run_compiled(fn: Callable[..., Tensor | None], *args: object) -> Tensor | None:
    """`fn(*args)` for a TorchScript function, with the graph executor's optimizations off (a
    thread-local flag, restored after): no profiling runs and no re-specializing per batch
    shape (with them the first epoch of a 5 ms-an-epoch run took 62 ms), no fusion; the ops
    run as written."""
    prev = _get_optimize()
    _set_optimize(False)
    try:
        return fn(*args)
    finally:
        _set_optimize(prev)


def _cases() -> list[tuple]:
    """Small problems that take every branch of `plain_step`: each of OWN_ACTS and one other,
    both losses, both orientations of the last layer, a narrow hidden layer, no hidden
    layer."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for act, classify, transposed, hidden in (("relu", True, True, [24, 8]),
                                              ("tanh", False, False, [20]),
                                              ("sigmoid", True, False, [16]),
                                              ("gelu", False, True, [20, 18]),
                                              ("relu", False, True, [])):
        dims = [6, *hidden, 3]
        Ws = [torch.randn(a, b, generator=gen) for a, b in zip(dims, dims[1:], strict=False)]
        bs = [torch.randn(b, generator=gen) for b in dims[1:]]
        X = torch.randn(32, 6, generator=gen)
        y = torch.randint(0, 3, (32,), generator=gen) if classify else torch.randn(32, 3,
                                                                                   generator=gen)
        out.append((X, y, Ws, bs, [W.t() for W in Ws], act, classify, transposed))
    return out


@functools.lru_cache(maxsize=1)
def compiled() -> tuple[Callable[..., Tensor | None], bool]:
    """(`plain_step` compiled by TorchScript and called through `run_compiled`, True) where it
    compiles and gives the Python function's bits on `_cases` (checked once a process), else
    (`plain_step`, False): either way a function with `plain_step`'s arguments. The
    interpreter skips Python's argument parsing and wrapping, ~1 us an op: a [128, 128]
    digits epoch takes 0.93-0.98x what the hand-written Python step before it took, and ~0.8x
    the same function's run as Python.
    `torch.jit.script` warns that it is deprecated (in favour of `torch.compile`, which needs a
    C++ compiler and seconds to compile); where it is gone, the Python function runs."""
    script = getattr(getattr(torch, "jit", None), "script", None)
    if script is None or _get_optimize is None or _set_optimize is None:
        return plain_step, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = script(plain_step)
        if fn is plain_step:  # TorchScript switched off (PYTORCH_JIT=0): script returns it
            return plain_step, False
        run = functools.partial(run_compiled, fn)
        with torch.inference_mode():
            for X, y, Ws, bs, Wts, act, classify, transposed in _cases():
                got = []
                for f in (plain_step, run):
                    gWs = [torch.zeros_like(W) for W in Ws]
                    gbs = [torch.zeros_like(b) for b in bs]
                    n = X.shape[0]
                    bias = [*bs[:-1], bs[-1].view(-1, 1)] if transposed else bs
                    scale = torch.tensor(1.0 / n if classify else 2.0 / y.numel())
                    args = (X, y, Ws, bias, Wts, gWs, gbs, act, classify, transposed, True, scale,
                            torch.tensor(-1.0 / n))
                    loss = f(*args)
                    got.append([loss, *gWs, *gbs])
                if not all(torch.equal(a, b) for a, b in zip(*got, strict=True)):
                    return plain_step, False
    except Exception:  # any failure to compile or run it: the Python function
        return plain_step, False
    return run, True
