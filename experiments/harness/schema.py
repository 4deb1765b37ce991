"""Structured config schema (dataclasses + Enums) registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from experiments.harness.names import run_name

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
    n_samples: int | None = None  # None: all rows (digits, diabetes, csv) or the dataset default
    seed: int = 0
    val_frac: float = 0.2  # 0: no validation split (no val_* columns)
    test_frac: float = 0.2


@dataclass
class NoisyData(DataConfig):  # moons, xor, sine, mnist1d
    noise: float | None = None  # None: the dataset's own default


@dataclass
class SpiralsData(NoisyData):
    n_classes: int = 3


@dataclass
class BlobsData(NoisyData):
    n_classes: int = 3
    n_features: int = 2


@dataclass
class CirclesData(NoisyData):
    factor: float = 0.5


@dataclass
class Friedman1Data(NoisyData):
    n_features: int = 10


@dataclass
class Mnist1dData(NoisyData):
    """canonical: the published set (seed 42, its 4000 / 1000 train / test split, the package's
    own scaling); val_frac is then a fraction of the 4000 training samples, drawn by `seed`,
    and n_samples / noise / test_frac must stay at the published values. false: generated from
    `seed` with n_samples and noise, split val_frac / test_frac and standardized like the rest."""

    canonical: bool = True


@dataclass
class CsvData(DataConfig):
    path: str = MISSING
    target: str = MISSING
    task: CsvTask = CsvTask.auto


@dataclass
class OptimConfig:
    """Options shared by every optimizer, including the learning-rate schedule."""

    name: str = MISSING
    lr: float = 0.01
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.constant
    warmup_epochs: int = 0
    step_size: int = 10  # schedule=step: decay every step_size epochs ...
    gamma: float = 0.1  # ... by this factor
    min_lr: float = 0.0  # schedule=cosine: floor


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    dampening: float = 0.0


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass
class Config:
    """Top-level keys are the sweep factors; `data` and `optim` are config groups."""

    activation: Activation = Activation.relu
    init: Init = Init.he
    init_std: float = 0.01  # init=normal only: N(0, init_std^2)
    depth: int = 2  # number of hidden layers
    width: int = 64  # units per hidden layer
    batchnorm: bool = False
    dropout: float = 0.0
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    dtype: DType = DType.float32
    threads: str = "auto"  # "auto" or a positive integer
    gradcheck: bool = True
    gradcheck_tol: float = 1e-4
    diverge_factor: float = 1e3
    probe_size: int = 256
    log_layers: bool = True
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


def register() -> None:
    """Store the schemas as `schema/config`, `schema/data/<kind>`, `schema/optim/<name>`.

    They live outside the `data` and `optim` groups, so `data=` lists only real datasets.
    Also registers the `run_name` resolver that makes hydra.sweep.subdir path-safe.
    """
    cs = ConfigStore.instance()
    cs.store(group="schema", name="config", node=Config)
    for kind, schema in DATA_SCHEMAS.items():
        cs.store(group="schema/data", name=kind, node=schema)
    cs.store(group="schema/optim", name="sgd", node=SGDConfig)
    cs.store(group="schema/optim", name="adam", node=AdamConfig)
    OmegaConf.register_new_resolver(
        "run_name", lambda overrides, exclude: run_name(overrides, [*exclude, *FREE_KEYS]),
        replace=True)


register()
