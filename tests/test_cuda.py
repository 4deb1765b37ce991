"""device=cuda: the same model, data and training on the GPU (runs only where one is present)."""

from __future__ import annotations

import pytest
import torch

from mlp_core.data import load_dataset
from mlp_core.model import MLPClassifier
from mlp_core.optim import SGD, LRSchedule
from mlp_core.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_cuda_forward_backward_match_cpu_in_float64():
    cpu = MLPClassifier(6, 4, [32, 32], activation="gelu", batchnorm=True, dtype=torch.float64, seed=0)
    gpu = cpu.clone(device="cuda")
    X = torch.randn(50, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (50,))
    with torch.inference_mode():
        grads = {}
        for name, m, Xd, yd in (("cpu", cpu, X, y), ("gpu", gpu, X.cuda(), y.cuda())):
            out, cache = m.forward(Xd, train=True)
            loss, dout = m.loss_and_grad(out, yd)
            grads[name] = m.backward(dout, cache)
    for k in cpu.params:
        assert grads["gpu"][k].device.type == "cuda"
        torch.testing.assert_close(grads["gpu"][k].cpu(), grads["cpu"][k], rtol=1e-9, atol=1e-12)


def test_cuda_training_learns_and_resumes_on_device():
    data = load_dataset("moons", seed=0, device="cuda")
    model = MLPClassifier(data.in_dim, data.out_dim, [32, 32], dropout=0.1, device="cuda", seed=0)
    trainer = Trainer(model, SGD(model.params, lr=0.1, momentum=0.9), LRSchedule(0.1, 10), data,
                      TrainConfig(epochs=10))
    recs = list(trainer.run())
    assert trainer.status == "completed" and recs[-1].metrics["val_acc"] > 0.95
    assert all(p.device.type == "cuda" for p in model.params.values())
    state = trainer.state_dict()
    trainer.load_state_dict(state)
