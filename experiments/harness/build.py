"""Turn a validated config into plain mlp_core objects: dataset, model, optimizer, schedule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
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


_DATA_CACHE: dict[str, Dataset] = {}  # the last dataset loaded in this process, by its config


def _data_key(d: dict[str, Any], dtype: Any, device: str) -> str:
    """What a loaded dataset depends on; a csv file's size and mtime stand for its contents."""
    stamp = None
    if d.get("path"):
        try:
            st = Path(str(d["path"])).expanduser().stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = "missing"
    return json.dumps([d, str(dtype), str(device), stamp], sort_keys=True, default=str)


def build_data(cfg: DictConfig) -> Dataset:
    """The run's dataset; loaded once per process and reused by the next jobs of a sweep that
    ask for the same one (nothing writes into a Dataset's tensors)."""
    d = plain(cfg.data)
    key = _data_key(d, _v(cfg.dtype), cfg.device)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    name = d.pop("name")
    options = {k: d.pop(k) for k in list(d) if k not in ("n_samples", "noise", "seed",
                                                          "val_frac", "test_frac")}
    data = load_dataset(name, dtype=_v(cfg.dtype), device=cfg.device, **d, **options)
    _DATA_CACHE.clear()  # keep one: a sweep over datasets holds no more than one in memory
    _DATA_CACHE[key] = data
    return data


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


# The run-time gradient check (gradcheck_directions): central differences along
# GRADCHECK_DIRECTIONS random unit directions of every parameter tensor, on the first
# GRADCHECK_ROWS training samples. A direction moves every entry of its tensor, so a backward
# wrong in any one entry shows (40 sampled entries, the old check, mostly miss it), and it
# costs two float64 forwards per direction: one per tensor takes 52 forwards on a 6-layer
# BatchNorm net (26 tensors), against the ~190 of 40 entries at least 3 per tensor.
GRADCHECK_DIRECTIONS = 1
GRADCHECK_ROWS = 16


def gradcheck_probe(data: Dataset, n: int = GRADCHECK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` training samples: the gradient check's small float64 probe."""
    return data.X_train[:n], data.y_train[:n]
