"""TrainStep: the straight-line step against the layered path, torch.optim + autograd, and
every condition that sends it back to the layered path."""

from __future__ import annotations

import pytest
import torch

from mlp_core import straight as straight_mod
from mlp_core.model import MLPClassifier, MLPRegressor
from mlp_core.optim import SGD, Adam
from mlp_core.step import TrainStep
from mlp_core.straight import plain_step
from tests.reference import leaf_params, torch_forward, torch_loss


def _batch(task: str, out_dim: int, n: int, gen: torch.Generator, dtype=torch.float32):
    X = torch.randn(n, 64, generator=gen, dtype=dtype)
    y = (torch.randint(0, out_dim, (n,), generator=gen) if task == "classification"
         else torch.randn(n, out_dim, generator=gen, dtype=dtype))
    return X, y


def _pair(Model, out_dim, hidden, act, opt_kw, **model_kw):
    """Two identical models and optimizers: a TrainStep each, the second's on the layered
    path."""
    steps = []
    for _ in range(2):
        m = Model(64, out_dim, hidden, activation=act, seed=3, **model_kw)
        steps.append(TrainStep(m, SGD(m.params, **opt_kw), m.new_grads()))
    steps[1].possible = False
    return steps


def _fused(step: TrainStep) -> bool:
    return step.possible and step._current() is not None


CASES = [(MLPClassifier, "classification", 10), (MLPClassifier, "classification", 20),
         (MLPRegressor, "regression", 1), (MLPRegressor, "regression", 3)]


@pytest.mark.parametrize("Model,task,out_dim", CASES)
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("hidden", [[128, 128], [], [32, 8]])
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
def test_straight_line_step_matches_the_layered_path(Model, task, out_dim, act, hidden,
                                                     compiled):
    """Same losses and params after 8 steps (4 with the loss): bit for bit where the output
    layer is computed as in the layered path (20 classes, or CUDA), to float round-off where
    it is computed transposed (narrow outputs on the CPU). `straight.plain_step` compiled by
    TorchScript and as Python; GELU's forward and backward are `layers.py`'s, called as Python
    from the compiled function."""
    fused, layered = _pair(Model, out_dim, hidden, act, dict(lr=0.05, momentum=0.9,
                                                             dampening=0.1))
    if not compiled:
        fused.fn, fused.is_compiled = plain_step, False
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for k in range(8):
            X, y = _batch(task, out_dim, 64, gen)
            need = k % 2 == 0
            a, b = fused(X, y, need), layered(X, y, need)
            assert (a is None) == (b is None) == (not need)
            if need:
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
            if k >= 1:  # the first step allocates the momentum buffer (the optimizer's own)
                assert _fused(fused)
    assert fused.opt.step_count == layered.opt.step_count == 8
    transposed = out_dim < 16 and torch.device("cpu") == fused.model.device
    for name, p in fused.model.params.items():
        q = layered.model.params[name]
        if transposed:
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
        else:
            assert torch.equal(p, q), name


@pytest.mark.parametrize("Model,task,out_dim", [CASES[0], CASES[3]])
@pytest.mark.parametrize("opt_kw", [dict(lr=0.05), dict(lr=0.05, momentum=0.9, dampening=0.2)])
def test_straight_line_step_matches_torch_optim_and_autograd(Model, task, out_dim, opt_kw):
    """float64, 20 steps against torch.nn.functional + autograd + torch.optim.SGD."""
    model = Model(64, out_dim, [32, 16], activation="relu", dtype=torch.float64, seed=1)
    step = TrainStep(model, SGD(model.params, **opt_kw), model.new_grads())
    P = leaf_params(model)
    ref = torch.optim.SGD(list(P.values()), **opt_kw)
    gen = torch.Generator().manual_seed(2)
    for k in range(20):
        X, y = _batch(task, out_dim, 48, gen, torch.float64)
        with torch.inference_mode():
            loss = step(X, y, need_loss=True)
        ref.zero_grad()
        ref_loss = torch_loss(model, torch_forward(model, P, X), y)
        ref_loss.backward()
        ref.step()
        assert abs(float(loss) - float(ref_loss.detach())) < 1e-10, f"step {k}"
        if k >= 1:
            assert _fused(step)
    for name, p in model.params.items():
        torch.testing.assert_close(p, P[name].detach(), rtol=0, atol=1e-10, msg=name)


def _step_once(step: TrainStep, gen: torch.Generator) -> None:
    with torch.inference_mode():
        step(*_batch("classification", 10, 64, gen))


def test_it_binds_again_when_a_param_is_swapped_into_the_dict():
    model = MLPClassifier(64, 10, [32], seed=0)
    opt = SGD(model.params, lr=0.1, momentum=0.9)
    step = TrainStep(model, opt, model.new_grads())
    gen = torch.Generator().manual_seed(0)
    _step_once(step, gen)
    _step_once(step, gen)
    assert _fused(step)
    # a tensor of its own: no longer a view of the params' one buffer, so no flat step
    model.params["fc0.b"] = model.params["fc0.b"].clone()
    old = model.params["fc0.b"].clone()
    assert step._current() is None
    _step_once(step, gen)  # the layered path updates the new tensor
    assert not torch.equal(model.params["fc0.b"], old)


def test_the_first_momentum_step_is_the_optimizers_own_and_the_next_are_straight_line():
    model = MLPClassifier(64, 10, [32], seed=0)
    opt = SGD(model.params, lr=0.1, momentum=0.9)
    step = TrainStep(model, opt, model.new_grads())
    assert step.possible and step._current() is None  # no momentum buffer yet
    _step_once(step, torch.Generator().manual_seed(0))
    assert opt.momentum_buffer is not None and _fused(step)


@pytest.mark.parametrize("change", ["nesterov", "weight_decay", "dropout", "momentum_off",
                                    "buffer_replaced", "to_gelu"])
def test_a_changed_setting_sends_the_step_back_to_the_layered_path_or_binds_again(change):
    """Each change is applied between steps; the run then matches a layered twin bit for bit
    from that step on (both started equal), so no stale binding is used."""
    steps = _pair(MLPClassifier, 20, [32], "relu", dict(lr=0.1, momentum=0.9))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        batches = [_batch("classification", 20, 64, gen) for _ in range(6)]
        for s in steps:
            for X, y in batches[:3]:
                s(X, y)
        assert _fused(steps[0])
        for s in steps:
            m, o = s.model, s.opt
            if change == "nesterov":
                o.nesterov = True
            elif change == "weight_decay":
                o.weight_decay = 1e-2
            elif change == "dropout":
                m.dropout = 0.5
            elif change == "momentum_off":
                o.momentum = 0.0
            elif change == "to_gelu":
                m.activation = "gelu"
            else:
                o.momentum_buffer = None  # as load_state_dict of a state without one
        expect_fused = change in ("momentum_off", "to_gelu")  # bound again
        assert _fused(steps[0]) is expect_fused
        for X, y in batches[3:]:
            for s in steps:
                s(X, y)
    for name, p in steps[0].model.params.items():
        assert torch.equal(p, steps[1].model.params[name]), name


def test_it_never_runs_for_batchnorm_adam_or_a_subclass_with_its_own_loss():
    bn = MLPClassifier(64, 10, [32], batchnorm=True, seed=0)
    assert not TrainStep(bn, SGD(bn.params, lr=0.1), bn.new_grads()).possible
    m = MLPClassifier(64, 10, [32], seed=0)
    assert not TrainStep(m, Adam(m.params), m.new_grads()).possible

    class Smoothed(MLPClassifier):
        def loss_and_grad(self, out, y):
            loss, d = super().loss_and_grad(out, y)
            return loss, d * 0.5

    s = Smoothed(64, 10, [32], seed=0)
    step = TrainStep(s, SGD(s.params, lr=0.1), s.new_grads())
    assert not step.possible
    with torch.inference_mode():
        step(*_batch("classification", 10, 64, torch.Generator().manual_seed(0)))
    assert s.params["fc1.b"].abs().sum() > 0  # trained, through its own loss


def test_an_optimizer_given_a_copy_of_the_params_dict_gets_the_layered_path():
    m = MLPClassifier(64, 10, [32], seed=0)
    step = TrainStep(m, SGD(dict(m.params), lr=0.1), m.new_grads())
    _step_once(step, torch.Generator().manual_seed(0))
    assert step.possible and step._current() is None


def test_the_step_is_compiled_here_and_its_python_runs_where_torchscript_fails(monkeypatch):
    """On this build TorchScript compiles `plain_step` with the same bits (the fast path is in
    use); where `torch.jit.script` is missing, raises, is switched off, or gives other bits on
    the check's cases, `compiled` returns the Python function."""
    fn, ok = straight_mod.compiled()
    assert ok and fn is not plain_step, "plain_step is not compiled on this build"
    check = straight_mod.compiled.__wrapped__  # uncached
    real = torch.jit.script

    def off_by_a_bit(f):  # compiles, then one gradient a float step off
        g = real(f)

        def run(*args):
            loss = g(*args)
            args[5][0].view(-1)[0] = torch.nextafter(args[5][0].view(-1)[0],
                                                     args[5][0].new_tensor(float("inf")))
            return loss
        return run

    def fails(f):
        raise RuntimeError("TorchScript is gone")

    def switched_off(f):  # what torch.jit.script does under PYTORCH_JIT=0
        return f

    for script in (off_by_a_bit, fails, switched_off):
        monkeypatch.setattr(torch.jit, "script", script)
        assert check() == (plain_step, False)
    monkeypatch.delattr(torch.jit, "script")
    assert check() == (plain_step, False)


def test_the_compiled_step_runs_with_the_graph_executors_optimizations_off_and_restores_them():
    seen = []
    straight_mod.run_compiled(lambda: seen.append(torch._C._get_graph_executor_optimize()))
    assert seen == [False] and torch._C._get_graph_executor_optimize() is True


def test_an_activation_changed_between_steps_is_the_one_used():
    steps = _pair(MLPClassifier, 20, [32], "gelu", dict(lr=0.1, momentum=0.9))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        batches = [_batch("classification", 20, 64, gen) for _ in range(4)]
        for s in steps:
            s(*batches[0])
            s.model.activation = "relu"
        for X, y in batches[1:]:
            for s in steps:
                s(X, y)
    assert _fused(steps[0])
    for name, p in steps[0].model.params.items():
        assert torch.equal(p, steps[1].model.params[name]), name
