"""Range and consistency checks on a composed config, each failure one line naming the key."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.harness.schema import FREE_KEYS, Activation, CsvTask, DType, Init, Schedule
from experiments.paths import CONF_DIR
from mlp_core.data import DEFAULT_NOISE, MNIST1D_N_SAMPLES, MNIST1D_TEST_FRAC

ENUM_KEYS: dict[str, type[Enum]] = {
    "activation": Activation,
    "init": Init,
    "dtype": DType,
    "optim.schedule": Schedule,
    "data.task": CsvTask,
}


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# key -> (check, what is allowed). Keys absent from a config (e.g. optim.momentum for adam) are
# skipped; a None value is checked only where the description says so.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "depth": (lambda v: _int(v) and v >= 0, "an integer >= 0 (0 = a linear model)"),
    "width": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "init_std": (lambda v: _num(v) and v > 0, "a number > 0"),
    "dropout": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "epochs": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "seed": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "device": (
        lambda v: isinstance(v, str) and re.fullmatch(r"cpu|cuda(:\d+)?|mps", v) is not None,
        "cpu, cuda, cuda:<index> or mps",
    ),
    "threads": (
        lambda v: v == "auto" or (str(v).isdigit() and int(v) >= 1),
        "auto or an integer >= 1",
    ),
    "gradcheck_tol": (lambda v: _num(v) and v > 0, "a number > 0"),
    "diverge_factor": (lambda v: _num(v) and v > 1, "a number > 1"),
    "probe_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "data.n_samples": (
        lambda v: v is None or (_int(v) and v >= 10),
        "null (the dataset's default) or an integer >= 10",
    ),
    "data.noise": (lambda v: v is None or (_num(v) and v >= 0), "null or a number >= 0"),
    "data.seed": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "data.val_frac": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1) (0 = no val split)"),
    "data.test_frac": (lambda v: _num(v) and 0 < v < 1, "a number in (0, 1)"),
    "data.n_classes": (lambda v: _int(v) and v >= 2, "an integer >= 2"),
    "data.n_features": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "data.factor": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "data.path": (lambda v: isinstance(v, str) and v != "", "a path to a CSV file"),
    "data.target": (lambda v: isinstance(v, str) and v != "", "a column name of the CSV file"),
    "optim.lr": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "optim.weight_decay": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "optim.warmup_epochs": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "optim.step_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "optim.gamma": (lambda v: _num(v) and v > 0, "a number > 0"),
    "optim.min_lr": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "optim.momentum": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.dampening": (lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "optim.beta1": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.beta2": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.eps": (lambda v: _num(v) and v > 0, "a number > 0"),
}


class ConfigError(ValueError):
    """A bad config value: `str(err)` is the one-line message shown to the user."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        what = f"{key} is not set" if value == "???" else f"{key}={_show(value)}"
        super().__init__(f"invalid config: {what} (allowed: {allowed})")


def _show(value: Any) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def group_options(group: str) -> list[str]:
    """Names a config group offers on the command line (`data` -> spirals, moons, ...)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def allowed_for(key: str) -> str:
    """What `key` accepts, in words, for error messages."""
    if key in ENUM_KEYS:
        return ", ".join(m.name for m in ENUM_KEYS[key])
    if key in RULES:
        return RULES[key][1]
    if key in ("data", "optim"):
        return ", ".join(group_options(key))
    if key in ("batchnorm", "gradcheck", "log_layers", "optim.nesterov", "data.canonical"):
        return "true, false"
    if key == "plot":
        return "true, false, null (single run: true, sweep: false)"
    return "see `python experiments/run.py --cfg job`"


def device_problem(device: str) -> str | None:
    """Why `device` (cpu, cuda, cuda:N, mps) cannot be used on this machine; None if it can."""
    kind, _, index = device.partition(":")
    if kind == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            return "no CUDA device on this machine: torch.cuda.is_available() is false"
        if index and int(index) >= n:
            return f"this machine has {n} CUDA device(s): cuda:0 .. cuda:{n - 1}"
    if kind == "mps" and not torch.backends.mps.is_available():
        return "no MPS device on this machine: torch.backends.mps.is_available() is false"
    return None


def check_device(device: str) -> None:
    """Raise ConfigError naming `device` if this machine does not have it."""
    problem = device_problem(device)
    if problem:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        have = ["cpu", *(f"cuda:{i}" for i in range(n))]
        if torch.backends.mps.is_available():
            have.append("mps")
        raise ConfigError("device", device, f"{', '.join(have)}; {problem}")


class UnknownKeyError(ConfigError):
    """A key the schema does not have (a typo behind `+`, or a key of another group)."""

    def __init__(self, key: str, known: list[str]) -> None:
        self.key, self.value, self.allowed = key, None, ", ".join(known)
        ValueError.__init__(self, f"invalid config: unknown key {key} (allowed: {self.allowed}; "
                            f"free annotations go under {' or '.join(FREE_KEYS)})")


def _fields(node: DictConfig) -> list[str] | None:
    """The keys the node's schema dataclass declares (None for a node without a schema)."""
    kind = OmegaConf.get_type(node)
    if kind is None or not dataclasses.is_dataclass(kind):
        return None
    return [f.name for f in dataclasses.fields(kind)]


def check_keys(cfg: DictConfig) -> None:
    """Raise UnknownKeyError for a key no schema declares, `+` or not; FREE_KEYS are free."""
    nodes = [("", cfg)] + [(f"{k}.", cfg[k]) for k in ("data", "optim")
                           if isinstance(cfg.get(k), DictConfig)]
    for prefix, node in nodes:
        known = _fields(node)
        if known is None:
            continue
        extra = [k for k in node if k not in known and k != "hydra"
                 and not (prefix == "" and k in FREE_KEYS)]
        if extra:
            raise UnknownKeyError(prefix + str(extra[0]), [prefix + k for k in known
                                                           if not (prefix == "" and k in FREE_KEYS)])


def _missing(cfg: DictConfig) -> set[str]:
    """The unset (`???`) keys of cfg, full dotted names; a hydra node (Hydra's) is skipped."""
    out: set[str] = set()
    for name in cfg:
        if name == "hydra":
            continue
        if OmegaConf.is_missing(cfg, name):
            out.add(str(name))
        elif isinstance(node := cfg._get_node(name), DictConfig | ListConfig):
            out.update(OmegaConf.missing_keys(node))  # full keys: the node knows its parents
    return out


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first unknown key, or value out of range, unset, inconsistent."""
    check_keys(cfg)
    missing = sorted(_missing(cfg))
    if missing:
        raise ConfigError(missing[0], "???", allowed_for(missing[0]))
    for key, (check, allowed) in RULES.items():
        node_key = key.split(".")[0]
        if node_key not in cfg or OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue
        value = OmegaConf.select(cfg, key)
        if not check(value):
            raise ConfigError(key, value, allowed)
    data, optim = cfg.data, cfg.optim
    if data.name not in group_options("data"):
        raise ConfigError("data.name", data.name, ", ".join(group_options("data")))
    if data.val_frac + data.test_frac >= 1:
        raise ConfigError("data.test_frac", data.test_frac, "val_frac + test_frac < 1")
    if data.name == "friedman1" and data.n_features < 5:
        raise ConfigError("data.n_features", data.n_features, "an integer >= 5 for friedman1")
    if data.get("canonical"):  # the published MNIST-1D is one fixed set and split
        fixed = {"n_samples": (None, MNIST1D_N_SAMPLES), "noise": (None, DEFAULT_NOISE["mnist1d"]),
                 "test_frac": (MNIST1D_TEST_FRAC,)}
        for key, ok in fixed.items():
            if data[key] not in ok:
                raise ConfigError(f"data.{key}", data[key], f"{ok[-1]} with data.canonical=true "
                                  "(data.canonical=false chooses it)")
    if optim.name not in group_options("optim"):
        raise ConfigError("optim.name", optim.name, ", ".join(group_options("optim")))
    if optim.get("nesterov") and (optim.momentum <= 0 or optim.dampening != 0):
        raise ConfigError("optim.nesterov", True, "true only with momentum > 0 and dampening 0")
    if cfg.batchnorm and cfg.batch_size < 2:
        raise ConfigError("batch_size", cfg.batch_size, "an integer >= 2 with batchnorm=true "
                          "(a batch of 1 has no variance)")
    if cfg.batchnorm and cfg.probe_size < 2:
        raise ConfigError("probe_size", cfg.probe_size, "an integer >= 2 with batchnorm=true")
    check_device(cfg.device)
    if optim.warmup_epochs > cfg.epochs:
        raise ConfigError("optim.warmup_epochs", optim.warmup_epochs, "an integer <= epochs")
    if str(getattr(optim.schedule, "value", optim.schedule)) == "cosine" and optim.min_lr > optim.lr:
        raise ConfigError("optim.min_lr", optim.min_lr, "a number <= optim.lr with schedule=cosine")
