"""Turn a validated config into plain mlp_core objects: dataset, model, optimizer, schedule."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mlp_core.data import Dataset, load_dataset
from mlp_core.model import MLP, MLPClassifier, MLPRegressor
from mlp_core.optim import LRSchedule, make_optimizer
from mlp_core.train import TrainConfig, Trainer


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain JSON values (Enums as their names)."""
    out = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    return out


def _v(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


@dataclass
class Built:
    data: Dataset
    model: MLP
    optimizer: Any
    schedule: LRSchedule
    train: TrainConfig

    def trainer(self) -> Trainer:
        """A Trainer over these parts (its `run()` yields one EpochRecord per epoch)."""
        return Trainer(self.model, self.optimizer, self.schedule, self.data, self.train)


def build_data(cfg: DictConfig) -> Dataset:
    d = plain(cfg.data)
    name = d.pop("name")
    options = {k: d.pop(k) for k in list(d) if k not in ("n_samples", "noise", "seed",
                                                          "val_frac", "test_frac")}
    return load_dataset(name, dtype=_v(cfg.dtype), device=cfg.device, **d, **options)


def build(cfg: DictConfig) -> Built:
    """Dataset, model, optimizer, schedule and TrainConfig for `cfg` (already validated)."""
    data = build_data(cfg)
    cls = MLPClassifier if data.task == "classification" else MLPRegressor
    model = cls(
        in_dim=data.in_dim, out_dim=data.out_dim, hidden=[cfg.width] * cfg.depth,
        activation=_v(cfg.activation), init=_v(cfg.init), init_std=cfg.init_std,
        batchnorm=cfg.batchnorm, dropout=cfg.dropout, dtype=_v(cfg.dtype), device=cfg.device,
        seed=cfg.seed,
    )
    o = cfg.optim
    if o.name == "sgd":
        kw = dict(momentum=o.momentum, nesterov=o.nesterov, dampening=o.dampening)
    else:
        kw = dict(betas=(o.beta1, o.beta2), eps=o.eps)
    optimizer = make_optimizer(o.name, model.params, lr=o.lr, weight_decay=o.weight_decay, **kw)
    schedule = LRSchedule(o.lr, cfg.epochs, kind=_v(o.schedule), step_size=o.step_size,
                          gamma=o.gamma, min_lr=o.min_lr, warmup_epochs=o.warmup_epochs)
    train = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                        diverge_factor=cfg.diverge_factor, probe_size=cfg.probe_size,
                        log_layers=cfg.log_layers)
    return Built(data, model, optimizer, schedule, train)


def gradcheck_probe(data: Dataset, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` training samples: the gradient check's small float64 probe."""
    return data.X_train[:n], data.y_train[:n]
