"""mlp_core.flat: params and gradients in one buffer, and the optimizers' one-kernel steps on it."""

from __future__ import annotations

import pytest
import torch

from mlp_core import optim
from mlp_core.flat import ALIGN_BYTES, FlatGrads, flat_view, views_of, zeros_packed
from mlp_core.model import MLPClassifier, MLPRegressor
from mlp_core.optim import make_optimizer

from .test_optim import ADAM_CASES, SGD_CASES

CASES = [("sgd", kw) for kw in SGD_CASES.values()] + [("adam", kw) for kw in ADAM_CASES.values()]
IDS = [f"sgd-{c}" for c in SGD_CASES] + [f"adam-{c}" for c in ADAM_CASES]


def _data(n: int = 32, d: int = 6, classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, classes, (n,), generator=gen)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_views_are_aligned_in_order_and_found_again(dtype):
    like = [torch.empty(s, dtype=dtype) for s in [(5, 7), (7,), (3,), (7, 3), (1,)]]
    flat, views = zeros_packed(like)
    assert [v.shape for v in views] == [t.shape for t in like]
    assert all(v.data_ptr() % ALIGN_BYTES == 0 and v.is_contiguous() for v in views)
    assert all(v.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for v in views)
    starts = [v.storage_offset() for v in views]
    assert starts == sorted(starts) and torch.all(flat == 0)
    found = flat_view(views)
    assert found is not None and found.data_ptr() == flat.data_ptr()
    assert found.numel() == flat.numel()
    # a write through a view is a write into the buffer
    views[3].fill_(2.0)
    assert float(flat.sum()) == 2.0 * 21
    assert views_of(flat, [t.shape for t in like])[3].data_ptr() == views[3].data_ptr()


def test_flat_view_refuses_what_is_not_one_buffer():
    _, views = zeros_packed([torch.empty(4, 4), torch.empty(4), torch.empty(2, 4)])
    assert flat_view([views[0], views[2], views[1]]) is None  # out of order
    assert flat_view([views[0], views[1].clone(), views[2]]) is None  # a tensor from elsewhere
    assert flat_view([views[0], views[1]]) is not None  # a prefix is still laid out alike
    assert flat_view([]) is None
    with pytest.raises(ValueError, match="elements"):
        views_of(torch.zeros(10), [(4, 4)])


def test_model_params_are_views_of_one_buffer_and_stay_so():
    m = MLPClassifier(6, 3, [8, 5], batchnorm=True, seed=0)
    params = list(m.params.values())
    assert flat_view(params) is not None
    for copy in (m.clone(), m.clone(dtype=torch.float64)):
        assert flat_view(list(copy.params.values())) is not None
        assert all(torch.equal(copy.params[k], m.params[k].to(copy.dtype)) for k in m.params)
    # the init is the one drawn before packing: a second model of the same seed agrees
    assert all(torch.equal(m.params[k], MLPClassifier(6, 3, [8, 5], batchnorm=True,
                                                      seed=0).params[k]) for k in m.params)


@pytest.mark.parametrize("kind", ["plain", "batchnorm", "dropout", "regression", "narrow"])
def test_backward_into_new_grads_is_backward_bit_for_bit(kind):
    X, y = _data(n=64, d=130 if kind == "narrow" else 6)
    if kind == "regression":
        m = MLPRegressor(X.shape[1], 2, [9, 7], seed=1)
        y = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    else:
        m = MLPClassifier(X.shape[1], 3, [130] if kind == "narrow" else [9, 7],
                          batchnorm=kind == "batchnorm", dropout=0.3 if kind == "dropout" else 0.0,
                          seed=1)
    with torch.inference_mode():
        state = m.generator.get_state()
        out, cache = m.forward(X, train=True)
        _, dout = m.loss_and_grad(out, y)
        ref = m.backward(dout, cache)
        into = m.new_grads()
        got = m.backward(dout, cache, out=into)
        m.generator.set_state(state)
    assert got is into and isinstance(got, FlatGrads) and list(got) == list(m.params)
    assert all(torch.equal(got[k], ref[k]) for k in ref), [k for k in ref if
                                                            not torch.equal(got[k], ref[k])]
    assert not isinstance(ref, FlatGrads) and all(ref[k].data_ptr() != got[k].data_ptr()
                                                  for k in ref)


def test_backward_refuses_another_models_grads():
    X, y = _data()
    m, other = MLPClassifier(6, 3, [8], seed=0), MLPClassifier(6, 3, [9], seed=0)
    with torch.inference_mode():
        out, cache = m.forward(X)
        _, dout = m.loss_and_grad(out, y)
        for bad in (other.new_grads(), m.clone(dtype=torch.float64).new_grads()):
            with pytest.raises(ValueError, match="new_grads"):
                m.backward(dout, cache, out=bad)


def _train(m, name: str, kw: dict, flat: bool, steps: int = 12, spy: list | None = None):
    """`steps` optimizer steps of model m on fixed data; grads into one buffer when `flat`.
    spy: (the operations' class, its number of tensors) of each operation of the optimizer's
    rule in its steps: `_Each` runs `torch._foreach_*` on a list, `_One` a tensor's own op."""
    X, y = _data(n=48, d=m.in_dim)
    opt = make_optimizer(name, m.params, **kw)
    into = m.new_grads() if flat else None
    with torch.inference_mode():
        for t in range(steps):
            opt.lr = kw["lr"] * (0.5 if t >= 6 else 1.0)
            out, cache = m.forward(X)
            _, dout = m.loss_and_grad(out, y)
            grads = m.backward(dout, cache, out=into)
            if spy is None:
                opt.step(grads)
                continue
            real = {(cls, n): f for cls in (optim._Each, optim._One)
                    for n, f in vars(cls).items() if not n.startswith("_")}
            try:
                for (cls, n), f in real.items():
                    setattr(cls, n, staticmethod(
                        lambda ts, *a, _f=f.__func__, _c=cls.__name__, **k:
                        spy.append((_c, len(ts))) or _f(ts, *a, **k)))
                opt.step(grads)
            finally:
                for (cls, n), f in real.items():
                    setattr(cls, n, f)
    return opt


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_one_buffer_steps_are_the_per_tensor_steps_bit_for_bit(name, kw):
    flat_m = MLPClassifier(6, 3, [8, 5], batchnorm=True, seed=2)
    split_m = flat_m.clone()
    split_m.params.update({k: v.clone() for k, v in split_m.params.items()})  # own tensors
    assert flat_view(list(split_m.params.values())) is None

    _train(flat_m.clone(), name, kw, flat=True, steps=3)  # makes the one-kernel check first
    sizes: list[tuple[str, int]] = []  # (ops class, tensors) of each operation of the steps
    fused = _train(flat_m, name, kw, flat=True, spy=sizes)
    # every operation of the rule once, on the buffer, as that tensor's own op; SGD with
    # momentum as one kernel after its first step (the buffer's copy_)
    assert sizes and set(sizes) == {("_One", 1)}, sizes
    if name == "sgd" and kw.get("momentum"):  # the rest: torch._fused_sgd_ (one kernel)
        first: list[tuple[str, int]] = []
        _train(MLPClassifier(6, 3, [8, 5], batchnorm=True, seed=2), name, kw, flat=True,
               steps=1, spy=first)
        assert sizes == first, (sizes, first)
    sizes.clear()
    split = _train(split_m, name, kw, flat=False, spy=sizes)
    assert set(sizes) == {("_Each", len(split_m.params))}  # per tensor
    for k in flat_m.params:
        assert torch.equal(flat_m.params[k], split_m.params[k]), k
    a, b = fused.state_dict(), split.state_dict()
    for key, bufs in a["state"].items():  # None: plain SGD keeps no buffer
        assert bufs is None and b["state"][key] is None or all(
            torch.equal(bufs[n], b["state"][key][n]) for n in bufs)


@pytest.mark.parametrize(("name", "kw"), [CASES[1], CASES[-1]], ids=[IDS[1], IDS[-1]])
def test_state_moves_between_one_buffer_and_per_tensor_optimizers(name, kw):
    straight = MLPClassifier(6, 3, [8], seed=4)
    _train(straight, name, kw, flat=True, steps=10)

    first = MLPClassifier(6, 3, [8], seed=4)
    opt = _train(first, name, kw, flat=True, steps=5)
    split = first.clone()
    split.params.update({k: v.clone() for k, v in split.params.items()})
    moved = make_optimizer(name, split.params, **kw)
    moved.load_state_dict(opt.state_dict())
    X, y = _data(n=48, d=6)
    with torch.inference_mode():
        for t in range(5, 10):
            moved.lr = kw["lr"] * (0.5 if t >= 6 else 1.0)
            out, cache = split.forward(X)
            _, dout = split.loss_and_grad(out, y)
            moved.step(split.backward(dout, cache))
    assert all(torch.equal(straight.params[k], split.params[k]) for k in straight.params)


@pytest.mark.parametrize("steps_before", [1, 3])
def test_a_param_swapped_into_the_dict_is_the_one_updated(steps_before):
    """Also after steps that repeat the last one's tensors (3: `_same_as_last` holds)."""
    m = MLPClassifier(6, 3, [8], seed=0)
    opt = make_optimizer("sgd", m.params, lr=0.1, momentum=0.9)
    X, y = _data()
    grads = m.new_grads()
    with torch.inference_mode():
        for _ in range(steps_before):
            out, cache = m.forward(X)
            _, dout = m.loss_and_grad(out, y)
            opt.step(m.backward(dout, cache, out=grads))
        assert opt._same_as_last(grads) is (steps_before > 2)
        old = m.params["fc1.W"]
        m.params["fc1.W"] = old.clone()  # no longer part of the buffer: per-tensor steps
        before = m.params["fc1.W"].clone()
        out, cache = m.forward(X)
        _, dout = m.loss_and_grad(out, y)
        opt.step(m.backward(dout, cache, out=grads))
    assert not torch.equal(m.params["fc1.W"], before)
    assert not torch.equal(old, m.params["fc1.W"])


def test_a_gradient_swapped_into_the_flat_grads_is_the_one_read():
    """The fast repeat of the last step's tensors (`_same_as_last`) checks the gradients'
    entries too: one replaced by a tensor of its own is read per tensor."""
    m = MLPClassifier(6, 3, [8], seed=0)
    opt = make_optimizer("sgd", m.params, lr=0.1)
    X, y = _data()
    grads = m.new_grads()
    with torch.inference_mode():
        for _ in range(3):
            out, cache = m.forward(X)
            _, dout = m.loss_and_grad(out, y)
            opt.step(m.backward(dout, cache, out=grads))
        assert opt._same_as_last(grads)
        grads["fc0.b"] = torch.ones_like(grads["fc0.b"])  # read from here, not the buffer
        before = m.params["fc0.b"].clone()
        opt.step(grads)
    torch.testing.assert_close(m.params["fc0.b"], before - 0.1, rtol=0, atol=1e-7)


def test_a_first_step_from_a_plain_dict_still_lets_later_steps_use_the_buffer(monkeypatch):
    """SGD's momentum buffer is made on its first step; made from a plain gradient dict for
    params in one buffer, it is laid out like them, so the later steps from `new_grads()` run
    on the whole buffer (and equal the per-tensor steps)."""
    kw = SGD_CASES["momentum"]
    flat_m = MLPClassifier(6, 3, [8], seed=6)
    split_m = flat_m.clone()
    split_m.params.update({k: v.clone() for k, v in split_m.params.items()})
    X, y = _data(n=48)
    fused, split = make_optimizer("sgd", flat_m.params, **kw), \
        make_optimizer("sgd", split_m.params, **kw)
    into = flat_m.new_grads()
    with torch.inference_mode():
        for t in range(4):
            for m, opt, out in ((flat_m, fused, into if t else None), (split_m, split, None)):
                o, cache = m.forward(X)
                _, dout = m.loss_and_grad(o, y)
                opt.step(m.backward(dout, cache, out=out))
    assert flat_view(fused.momentum_buffer) is not None
    assert all(torch.equal(flat_m.params[k], split_m.params[k]) for k in flat_m.params)
    sizes: list[tuple[str, int]] = []  # one more step of the same optimizer: on the buffer
    kernel = torch._fused_sgd_
    monkeypatch.setattr(torch, "_fused_sgd_", lambda ps, *a, **k:
                        sizes.append(("_fused_sgd_", len(ps))) or kernel(ps, *a, **k))
    real = {cls: vars(cls)["add_"] for cls in (optim._Each, optim._One)}
    try:
        for cls, f in real.items():
            cls.add_ = staticmethod(lambda ts, *a, _f=f.__func__, _c=cls.__name__, **k:
                                    sizes.append((_c, len(ts))) or _f(ts, *a, **k))
        with torch.inference_mode():
            o, cache = flat_m.forward(X)
            _, dout = flat_m.loss_and_grad(o, y)
            fused.step(flat_m.backward(dout, cache, out=into))
    finally:
        for cls, f in real.items():
            cls.add_ = f
    # the update as one kernel on the buffer where `_one_kernel_sgd` holds, else its add_
    assert sizes in ([("_fused_sgd_", 1)], [("_One", 1)]), sizes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_buffer_ends_on_a_64_byte_boundary_and_a_short_storage_is_refused(dtype):
    like = [torch.empty(s, dtype=dtype) for s in [(5, 7), (3,)]]  # 35 + 3 elements, gaps
    flat, views = zeros_packed(like)
    step = ALIGN_BYTES // flat.element_size()
    assert flat.numel() % step == 0 and flat.numel() >= views[-1].storage_offset() + 3
    assert flat_view(views).numel() == flat.numel()
    # the same layout in a storage that ends right after the last view: not one buffer
    short = torch.zeros(views[-1].storage_offset() + 3, dtype=dtype)
    cut = [short[v.storage_offset():v.storage_offset() + v.numel()].view(v.shape) for v in views]
    assert flat_view(cut) is None


FORMS = [dict(), dict(nesterov=True), dict(decay=True), dict(damp=True),
         dict(nesterov=True, decay=True)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("form", FORMS, ids=lambda f: "-".join(f) or "momentum")
def test_sgd_runs_as_one_kernel_where_that_kernel_gives_the_rules_bits(dtype, form, monkeypatch):
    """`torch._fused_sgd_` replaces SGD's kernels only where it gives their bits: it does on
    this build (on whole 64-byte lines), and a kernel that rounds otherwise, fails or is
    missing is not used."""
    flags = {"nesterov": False, "decay": False, "damp": False, **form}
    check = optim._one_kernel_sgd.__wrapped__  # uncached
    assert check(dtype, torch.device("cpu"), **flags), "the one-kernel step is not used here"
    real = torch._fused_sgd_

    def one_ulp_off(params, grads, bufs, **kw):  # the rule, one element rounded up instead
        real(params, grads, bufs, **kw)
        p = params[0]
        p[4093] = torch.nextafter(p[4093], p.new_tensor(float("inf")))

    def fails(*a, **k):
        raise RuntimeError("no kernel for this device")

    for kernel in (one_ulp_off, fails):
        monkeypatch.setattr(torch, "_fused_sgd_", kernel)
        assert not check(dtype, torch.device("cpu"), **flags)
    monkeypatch.delattr(torch, "_fused_sgd_")
    assert not check(dtype, torch.device("cpu"), **flags)
