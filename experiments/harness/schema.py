"""Structured config schema (dataclasses + Enums) registered in Hydra's ConfigStore.

The one home of every default: conf/*.yaml state only what differs from these dataclasses.
Where mlp_core has the same default (training loop, model, data, schedule, Adam), it is read
from mlp_core here rather than typed twice; the harness's own choices (SGD with momentum 0.9,
lr per optimizer, the gradient check, threads) are typed here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from experiments.harness.names import folder_suffix, run_name
from mlp_core.data import (
    DATASETS,
    DEFAULT_N_SAMPLES,
    DEFAULT_NOISE,
    OPTIONS,
    SYNTHETIC_N_SAMPLES,
    load_dataset,
)
from mlp_core.model import MLP
from mlp_core.optim import Adam, LRSchedule
from mlp_core.train import TrainConfig


def _defaults(fn: Any) -> dict[str, Any]:
    """The keyword defaults of `fn` (a function or a class's __init__)."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


_TRAIN, _SCHEDULE = TrainConfig(), _defaults(LRSchedule)
_MODEL, _DATA, _ADAM = _defaults(MLP.__init__), _defaults(load_dataset), _defaults(Adam.__init__)

# Enum member names are what users type on the command line (omegaconf matches by name).


class Activation(Enum):
    relu = "relu"
    leaky_relu = "leaky_relu"
    sigmoid = "sigmoid"
    tanh = "tanh"
    gelu = "gelu"
    silu = "silu"


class Init(Enum):
    he = "he"
    he_uniform = "he_uniform"
    xavier = "xavier"
    xavier_uniform = "xavier_uniform"
    lecun = "lecun"
    normal = "normal"
    uniform = "uniform"


class Schedule(Enum):
    constant = "constant"
    step = "step"
    cosine = "cosine"


class DType(Enum):
    float32 = "float32"
    float64 = "float64"


class CsvTask(Enum):
    auto = "auto"
    classification = "classification"
    regression = "regression"


@dataclass
class DataConfig:
    """Options every dataset takes; `seed` draws and splits the data (independent of `seed`)."""

    name: str = MISSING
    n_samples: int | None = None  # None: every row (digits, diabetes, csv); a smaller n subsamples
    seed: int = _DATA["seed"]
    val_frac: float = _DATA["val_frac"]  # 0: no validation split (no val_* columns)
    test_frac: float = _DATA["test_frac"]


@dataclass
class NoisyData(DataConfig):  # moons, xor, sine, mnist1d
    noise: float | None = None  # spirals: angle std; blobs: cluster std; mnist1d: iid noise scale


@dataclass
class SpiralsData(NoisyData):
    n_classes: int = OPTIONS["spirals"]["n_classes"]  # arms


@dataclass
class BlobsData(NoisyData):
    n_classes: int = OPTIONS["blobs"]["n_classes"]
    n_features: int = OPTIONS["blobs"]["n_features"]


@dataclass
class CirclesData(NoisyData):
    factor: float = OPTIONS["circles"]["factor"]  # inner radius / outer radius


@dataclass
class Friedman1Data(NoisyData):
    n_features: int = OPTIONS["friedman1"]["n_features"]  # 5 informative, the rest noise


@dataclass
class Mnist1dData(NoisyData):
    """canonical: the published set (seed 42, its 4000 / 1000 train / test split, the package's
    own scaling); val_frac is then a fraction of the 4000 training samples, drawn by `seed`,
    and n_samples / noise / test_frac must stay at the published values. false: generated from
    `seed` with n_samples and noise, split val_frac / test_frac and standardized like the rest."""

    canonical: bool = OPTIONS["mnist1d"]["canonical"]


@dataclass
class CsvData(DataConfig):
    path: str = MISSING  # required: data.path=/path/to/file.csv
    target: str = MISSING  # required: data.target=<column name>
    task: CsvTask = CsvTask(OPTIONS["csv"]["task"])  # auto: classification if few integer labels


@dataclass
class OptimConfig:
    """Options shared by every optimizer, including the learning-rate schedule."""

    name: str = MISSING
    lr: float = 0.01
    weight_decay: float = 0.0  # coupled (added to the gradient), as torch.optim
    schedule: Schedule = Schedule(_SCHEDULE["kind"])  # constant, step, cosine
    warmup_epochs: int = _SCHEDULE["warmup_epochs"]  # linear warmup epochs before the schedule
    step_size: int = _SCHEDULE["step_size"]  # schedule=step: multiply lr by gamma every ...
    gamma: float = _SCHEDULE["gamma"]  # ... step_size epochs
    min_lr: float = _SCHEDULE["min_lr"]  # schedule=cosine: the final lr


@dataclass
class SGDConfig(OptimConfig):
    """torch.optim.SGD's rule; the harness's defaults: lr 0.1 with momentum 0.9."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    dampening: float = 0.0


@dataclass
class AdamConfig(OptimConfig):
    """torch.optim.Adam's rule and betas/eps; the harness's default lr is 0.01 (torch: 1e-3)."""

    name: str = "adam"
    lr: float = 0.01
    beta1: float = _ADAM["betas"][0]
    beta2: float = _ADAM["betas"][1]
    eps: float = _ADAM["eps"]


@dataclass
class Config:
    """Top-level keys are the sweep factors; `data` and `optim` are config groups."""

    # model: the sweep factors (defaults: mlp_core.model.MLP's)
    activation: Activation = Activation(_MODEL["activation"])
    init: Init = Init(_MODEL["init"])
    init_std: float = _MODEL["init_std"]  # init=normal only: N(0, init_std^2)
    depth: int = len(_MODEL["hidden"])  # hidden layers (0 = a linear model)
    width: int = _MODEL["hidden"][0]  # units per hidden layer
    batchnorm: bool = _MODEL["batchnorm"]
    dropout: float = _MODEL["dropout"]
    # training (defaults: mlp_core.train.TrainConfig's)
    epochs: int = _TRAIN.epochs
    batch_size: int = _TRAIN.batch_size
    seed: int = _TRAIN.seed  # model init, batch order and dropout masks (data.seed: the data)
    diverge_factor: float = _TRAIN.diverge_factor  # diverged: train loss > factor * max(L0, 1)
    probe_size: int = _TRAIN.probe_size  # training samples for the per-layer statistics
    log_layers: bool = _TRAIN.log_layers  # write layers.csv
    # machine
    device: str = "cpu"  # cpu, cuda, cuda:<i>, mps
    dtype: DType = DType.float32
    threads: str = "auto"  # torch threads per run: auto = 1 for small nets (docs/harness.md)
    # checks
    gradcheck: bool = True  # finite-difference check of the backward before training
    gradcheck_tol: float = 1e-4  # the largest relative error it accepts
    # labels (never part of the run's identity)
    name: str = ""  # folder label: <date>_<time>_<name>/ (default: the preset's name)
    notes: Any = None  # free annotation (text or +notes.<key>=...): never part of the identity
    tags: Any = None  # free labels (tags=[a,b]): never part of the run's identity
    plot: bool | None = None  # learning-curve PNGs in the run dir; null: single run yes, sweep no
    data: Any = MISSING
    optim: Any = MISSING


# The free namespace for annotations: any value, any sub-key, never checked, never part of a
# run's identity (results key, run dir name). Every other key must be in the schema.
FREE_KEYS = ("notes", "tags")

DATA_SCHEMAS: dict[str, type[DataConfig]] = {
    "fixed": DataConfig,
    "noisy": NoisyData,
    "spirals": SpiralsData,
    "blobs": BlobsData,
    "circles": CirclesData,
    "friedman1": Friedman1Data,
    "mnist1d": Mnist1dData,
    "csv": CsvData,
}


# The kind of options each dataset takes; its concrete defaults come from mlp_core.data.
DATASET_SCHEMAS: dict[str, type[DataConfig]] = {
    "spirals": SpiralsData, "moons": NoisyData, "circles": CirclesData, "xor": NoisyData,
    "blobs": BlobsData, "digits": DataConfig, "mnist1d": Mnist1dData, "sine": NoisyData,
    "friedman1": Friedman1Data, "diabetes": DataConfig, "csv": CsvData,
}


def dataset_defaults(name: str) -> DataConfig:
    """Dataset `name`'s schema node with mlp_core's defaults for it (n_samples, noise)."""
    extra = {"noise": DEFAULT_NOISE[name]} if name in DEFAULT_NOISE else {}
    return DATASET_SCHEMAS[name](name=name, n_samples=DEFAULT_N_SAMPLES.get(
        name, SYNTHETIC_N_SAMPLES), **extra)  # type: ignore[call-arg]


def register() -> None:
    """Store the schemas as `schema/config`, `schema/data/<kind>`, `schema/optim/<name>`.

    They live outside the `data` and `optim` groups, so `data=` lists only real datasets.
    Also registers the `run_name` resolver that makes hydra.sweep.subdir path-safe, and
    `folder_suffix` that appends `_<name>` (or the preset's name) to the sweep/run folder.
    """
    cs = ConfigStore.instance()
    cs.store(group="schema", name="config", node=Config)
    for kind, schema in DATA_SCHEMAS.items():
        cs.store(group="schema/data", name=kind, node=schema)
    for name in DATASETS:  # schema/data/<dataset>: the kind's schema, mlp_core's defaults
        cs.store(group="schema/data", name=name, node=dataset_defaults(name))
    cs.store(group="schema/optim", name="sgd", node=SGDConfig)
    cs.store(group="schema/optim", name="adam", node=AdamConfig)
    OmegaConf.register_new_resolver(
        "run_name", lambda overrides, exclude: run_name(overrides, [*exclude, *FREE_KEYS]),
        replace=True)
    OmegaConf.register_new_resolver("folder_suffix", folder_suffix, replace=True)


register()
