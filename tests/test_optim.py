"""mlp_core.optim: SGD and Adam step for step against torch.optim; checkpoints; LR schedules."""

import enum
import io
import math

import pytest
import torch

from mlp_core.optim import (
    OPTIMIZERS,
    SCHEDULES,
    SGD,
    Adam,
    LRSchedule,
    make_optimizer,
)

SHAPES = {"fc0.W": (5, 7), "fc0.b": (7,), "bn0.gamma": (7,), "bn0.beta": (7,),
          "fc1.W": (7, 3), "fc1.b": (3,)}

SGD_CASES = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "weight_decay": {"lr": 0.1, "weight_decay": 1e-2},
    "dampening": {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    "nesterov_wd": {"lr": 0.05, "momentum": 0.95, "nesterov": True, "weight_decay": 5e-3},
}
ADAM_CASES = {
    "default": {"lr": 1e-2},
    "weight_decay": {"lr": 1e-2, "weight_decay": 1e-2},
    "betas_eps": {"lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-3},
}
CASES = [("sgd", n, kw) for n, kw in SGD_CASES.items()] + \
        [("adam", n, kw) for n, kw in ADAM_CASES.items()]
ORACLE = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def make_params(dtype: torch.dtype, seed: int = 0, device: str = "cpu") -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=gen, dtype=dtype).to(device) for n, s in SHAPES.items()}


def make_grads(dtype: torch.dtype, n_steps: int, seed: int = 1, device: str = "cpu") -> list:
    """Random gradients, some scaled up to stress the moments."""
    gen = torch.Generator().manual_seed(seed)
    return [{n: (torch.randn(s, generator=gen, dtype=dtype) * (1 + 4 * (t % 3 == 0))).to(device)
             for n, s in SHAPES.items()} for t in range(n_steps)]


def lr_for(step: int, base: float) -> float:
    """A changing lr, as a schedule would set between epochs."""
    return base * (0.5 if step >= 20 else 1.0)


def run_pair(name: str, kw: dict, dtype: torch.dtype, n_steps: int = 35, foreach=None,
             device: str = "cpu"):
    """Run ours and torch.optim side by side; yield (ours, theirs) params after every step."""
    ours_p = make_params(dtype, device=device)
    theirs = {n: p.clone().requires_grad_(True) for n, p in ours_p.items()}
    ours = make_optimizer(name, ours_p, **kw)
    oracle = ORACLE[name](list(theirs.values()), foreach=foreach, **kw)
    for t, grads in enumerate(make_grads(dtype, n_steps, device=device)):
        ours.lr = lr_for(t, kw["lr"])
        oracle.param_groups[0]["lr"] = lr_for(t, kw["lr"])
        ours.step(grads)
        for n, p in theirs.items():
            p.grad = grads[n].clone()
        oracle.step()
        yield ours_p, {n: p.detach() for n, p in theirs.items()}


def max_diff(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


@pytest.mark.parametrize("foreach", [None, True], ids=["single_tensor", "foreach"])
@pytest.mark.parametrize(("name", "case", "kw"), CASES, ids=[f"{o}-{c}" for o, c, _ in CASES])
def test_matches_torch_optim_float64_every_step(name, case, kw, foreach):
    for ours, theirs in run_pair(name, kw, torch.float64, foreach=foreach):
        assert max_diff(ours, theirs) <= 1e-12


@pytest.mark.parametrize(("name", "case", "kw"), CASES, ids=[f"{o}-{c}" for o, c, _ in CASES])
def test_matches_torch_optim_float32(name, case, kw):
    for ours, theirs in run_pair(name, kw, torch.float32):
        for n in ours:
            torch.testing.assert_close(ours[n], theirs[n], rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "case", "kw"), CASES, ids=[f"{o}-{c}" for o, c, _ in CASES])
def test_matches_torch_optim_on_cuda(name, case, kw):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        for ours, theirs in run_pair(name, kw, dtype, device="cuda"):
            assert ours["fc0.W"].is_cuda
            assert max_diff(ours, theirs) <= tol


def test_nesterov_leaves_the_callers_grads_untouched():
    params = make_params(torch.float64)
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    for grads in make_grads(torch.float64, 3):
        before = {n: g.clone() for n, g in grads.items()}
        opt.step(grads)
        assert all(torch.equal(before[n], grads[n]) for n in grads)


def test_buffers_are_allocated_once_and_updated_in_place():
    params = make_params(torch.float64)
    sgd, adam = SGD(params, lr=0.1, momentum=0.9), Adam(make_params(torch.float64))
    grads = make_grads(torch.float64, 3)
    sgd.step(grads[0])
    adam.step(grads[0])
    ptrs = [[b.data_ptr() for b in bufs] for bufs in (sgd.momentum_buffer, adam.exp_avg,
                                                       adam.exp_avg_sq)]
    for g in grads[1:]:
        sgd.step(g)
        adam.step(g)
    assert ptrs == [[b.data_ptr() for b in bufs] for bufs in (sgd.momentum_buffer, adam.exp_avg,
                                                               adam.exp_avg_sq)]
    assert sgd.step_count == adam.step_count == 3


@pytest.mark.parametrize(("name", "kw"), [("sgd", SGD_CASES["nesterov_wd"]),
                                          ("sgd", SGD_CASES["dampening"]),
                                          ("adam", ADAM_CASES["betas_eps"])])
def test_state_dict_round_trip_continues_bit_identically(name, kw):
    grads = make_grads(torch.float32, 30)
    straight_p = make_params(torch.float32)
    straight = make_optimizer(name, straight_p, **kw)
    for t, g in enumerate(grads):
        straight.lr = lr_for(t, kw["lr"])
        straight.step(g)

    first_p = make_params(torch.float32)
    first = make_optimizer(name, first_p, **kw)
    for t, g in enumerate(grads[:13]):
        first.lr = lr_for(t, kw["lr"])
        first.step(g)
    first.lr = 0.123  # hyperparameters travel with the state
    buf = io.BytesIO()
    torch.save({"params": first_p, "optim": first.state_dict()}, buf)
    first.step(grads[13])  # the saved state is a copy, not a view of live buffers
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    resumed_p = ckpt["params"]
    resumed = make_optimizer(name, resumed_p, lr=1.0)
    resumed.load_state_dict(ckpt["optim"])
    assert resumed.lr == 0.123 and resumed.step_count == 13
    for t, g in enumerate(grads[13:], start=13):
        resumed.lr = lr_for(t, kw["lr"])
        resumed.step(g)
    assert all(torch.equal(straight_p[n], resumed_p[n]) for n in SHAPES)


def test_load_state_dict_rejects_a_mismatched_state():
    sgd = SGD(make_params(torch.float64), lr=0.1, momentum=0.9)
    sgd.step(make_grads(torch.float64, 1)[0])
    state = sgd.state_dict()
    with pytest.raises(ValueError, match="optimizer 'sgd'"):
        Adam(make_params(torch.float64)).load_state_dict(state)
    with pytest.raises(ValueError, match="params"):
        SGD({"w": torch.zeros(3)}, lr=0.1).load_state_dict(state)
    state["state"]["momentum_buffer"]["fc1.b"] = torch.zeros(4)
    with pytest.raises(ValueError, match="shape"):
        SGD(make_params(torch.float64), lr=0.1).load_state_dict(state)
    bad = SGD(make_params(torch.float64), lr=0.1).state_dict()
    bad["hyperparams"]["lr"] = -1.0
    target = SGD(make_params(torch.float64), lr=0.2)
    with pytest.raises(ValueError, match="lr"):
        target.load_state_dict(bad)
    assert target.lr == 0.2


def test_step_requires_exactly_the_param_names():
    opt = SGD(make_params(torch.float64), lr=0.1)
    grads = make_grads(torch.float64, 1)[0]
    with pytest.raises(KeyError, match="fc1.b"):
        opt.step({n: g for n, g in grads.items() if n != "fc1.b"} | {"other": grads["fc1.b"]})
    with pytest.raises(KeyError):
        opt.step(grads | {"extra": grads["fc1.b"]})


def test_works_inside_and_outside_inference_mode():
    with torch.inference_mode():
        params = make_params(torch.float32)
        opt = Adam(params, lr=1e-2)
        sgd = SGD(params, lr=0.1, momentum=0.9)
        g = make_grads(torch.float32, 2)
        opt.step(g[0])
        sgd.step(g[0])
    opt.step(g[1])
    sgd.step(g[1])
    SGD(make_params(torch.float32), lr=0.1, momentum=0.9).load_state_dict(sgd.state_dict())
    assert opt.step_count == 2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": -0.1}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": 0.1, "momentum": -0.5}, "momentum"),
    ({"lr": 0.1, "weight_decay": -1e-4}, "weight_decay"),
    ({"lr": 0.1, "nesterov": True}, "nesterov requires momentum"),
    ({"lr": 0.1, "momentum": 0.9, "nesterov": True, "dampening": 0.1}, "dampening = 0"),
    ({"lr": 0.1, "momentum": 0.9, "dampening": 1.5}, "dampening"),
])
def test_sgd_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(make_params(torch.float64), **kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": -1e-3}, "lr"),
    ({"betas": (1.0, 0.999)}, r"betas\[0\]"),
    ({"betas": (0.9, -0.1)}, r"betas\[1\]"),
    ({"betas": (0.9,)}, "pair"),
    ({"eps": 0.0}, "eps"),
    ({"weight_decay": -1.0}, "weight_decay"),
])
def test_adam_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Adam(make_params(torch.float64), **kwargs)


def test_rejects_empty_or_non_float_params():
    with pytest.raises(ValueError, match="non-empty"):
        SGD({}, lr=0.1)
    with pytest.raises(ValueError, match="floating-point"):
        Adam({"w": torch.zeros(3, dtype=torch.int64)})


class Opt(enum.Enum):
    adam = "adam"


def test_make_optimizer_by_name():
    params = make_params(torch.float64)
    assert OPTIMIZERS == ("sgd", "adam")
    opt = make_optimizer("sgd", params, lr=0.1, momentum=0.9, nesterov=True)
    assert isinstance(opt, SGD) and opt.nesterov and opt.lr == 0.1
    adam = make_optimizer(Opt.adam, params, lr=1e-3, betas=[0.9, 0.99])
    assert isinstance(adam, Adam) and adam.betas == (0.9, 0.99)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", params, lr=0.1)
    with pytest.raises(ValueError, match=r"no option\(s\) \['momentum'\]"):
        make_optimizer("adam", params, lr=1e-3, momentum=0.9)
    with pytest.raises(ValueError, match="needs lr"):
        make_optimizer("sgd", params)


# --- schedules: expected values from the formulas, written out independently ---------------

def test_constant_schedule():
    s = LRSchedule(0.1, epochs=5)
    assert SCHEDULES == ("constant", "step", "cosine")
    assert [s.lr_at(e) for e in range(6)] == [0.1] * 6


def test_step_schedule_known_values_and_torch_steplr():
    s = LRSchedule(0.1, epochs=10, kind="step", step_size=3, gamma=0.5)
    expected = [0.1] * 3 + [0.05] * 3 + [0.025] * 3 + [0.0125]
    assert [s.lr_at(e) for e in range(1, 11)] == pytest.approx(expected, rel=1e-15)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    for e in range(1, 11):  # torch's lr for 0-based epoch e-1
        assert s.lr_at(e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


def test_cosine_schedule_known_values_and_torch_cosine_annealing():
    s = LRSchedule(0.1, epochs=10, kind="cosine", min_lr=0.01)
    assert s.lr_at(1) == pytest.approx(0.1, rel=1e-15)
    assert s.lr_at(6) == pytest.approx(0.01 + 0.09 * 0.5, rel=1e-12)  # half way: cos(pi/2) = 0
    assert s.lr_at(3) == pytest.approx(0.01 + 0.09 * (1 + math.cos(math.pi * 2 / 10)) / 2)
    assert s.lr_at(11) == s.lr_at(50) == 0.01  # past the end: held at the floor
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    for e in range(1, 11):
        assert s.lr_at(e) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()
    values = [s.lr_at(e) for e in range(1, 11)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_warmup_ramps_linearly_then_hands_over():
    cos = LRSchedule(0.2, epochs=10, kind="cosine", warmup_epochs=4)
    assert [cos.lr_at(e) for e in range(5)] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    # cosine over the 6 post-warmup epochs: epoch 4 + k uses progress (k - 1) / 6
    for k in range(1, 7):
        assert cos.lr_at(4 + k) == pytest.approx(0.1 * (1 + math.cos(math.pi * (k - 1) / 6)))
    step = LRSchedule(1.0, epochs=12, kind="step", step_size=2, gamma=0.1, warmup_epochs=2)
    assert [step.lr_at(e) for e in range(1, 9)] == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    const = LRSchedule(0.3, epochs=3, warmup_epochs=3)
    assert [const.lr_at(e) for e in range(1, 4)] == pytest.approx([0.1, 0.2, 0.3])
    assert LRSchedule(0.3, epochs=3).lr_at(0) == 0.3  # no warmup: epoch 0 reports base_lr


def test_schedule_drives_the_optimizer_lr():
    opt = SGD(make_params(torch.float64), lr=0.5)
    sched = LRSchedule(0.5, epochs=4, kind="step", step_size=1, gamma=0.5)
    seen = []
    for e in range(1, 5):
        opt.lr = sched.lr_at(e)
        seen.append(opt.lr)
    assert seen == [0.5, 0.25, 0.125, 0.0625]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"base_lr": -0.1, "epochs": 5}, "base_lr"),
    ({"base_lr": 0.1, "epochs": -1}, "epochs"),
    ({"base_lr": 0.1, "epochs": 5, "kind": "exponential"}, "unknown schedule 'exponential'"),
    ({"base_lr": 0.1, "epochs": 5, "kind": "step", "step_size": 0}, "step_size"),
    ({"base_lr": 0.1, "epochs": 5, "kind": "step", "gamma": 0.0}, "gamma"),
    ({"base_lr": 0.1, "epochs": 5, "kind": "cosine", "min_lr": 0.2}, "min_lr"),
    ({"base_lr": 0.1, "epochs": 5, "min_lr": -0.1}, "min_lr"),
    ({"base_lr": 0.1, "epochs": 5, "warmup_epochs": 6}, "warmup_epochs"),
    ({"base_lr": 0.1, "epochs": 5, "warmup_epochs": -1}, "warmup_epochs"),
    ({"base_lr": 0.1, "epochs": 2.5}, "epochs"),
])
def test_schedule_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRSchedule(**kwargs)


def test_lr_at_rejects_negative_epoch():
    with pytest.raises(ValueError, match="epoch"):
        LRSchedule(0.1, epochs=5).lr_at(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_momentum_as_a_tensor_scalar_is_the_python_floats_product_bit_for_bit(dtype) -> None:
    from mlp_core.optim import _scalar

    gen = torch.Generator().manual_seed(0)
    a = [torch.randn(64, 64, generator=gen, dtype=dtype), torch.randn(7, dtype=dtype)]
    b = [t.clone() for t in a]
    for m in (0.9, 0.99, 1 / 3):
        torch._foreach_mul_(a, m)
        torch._foreach_mul_(b, _scalar(m, b[0]))
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_tensors_mul_and_div_by_a_cached_scalar_are_the_python_floats_bit_for_bit(dtype):
    """The losses' 1/N and 2/numel factors and dropout's 1/(1-p) are cached 0-d tensors
    (`mlp_core.scalars`): a tensor's own mul_/div_ by one gives what the Python float gives."""
    from mlp_core.scalars import scalar

    gen = torch.Generator().manual_seed(1)
    for n in range(1, 300):
        x = torch.randn(n, 10, generator=gen, dtype=dtype)
        for f in (1.0 / n, -1.0 / n, 2.0 / (10 * n), 1.0 - 1.0 / (n + 1)):
            assert torch.equal(x.clone().mul_(f), x.clone().mul_(scalar(f, x))), (n, f)
            assert torch.equal(x.clone().div_(f), x.clone().div_(scalar(f, x))), (n, f)
