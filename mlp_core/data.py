"""Datasets as standardized train/val/test tensors, and seeded mini-batching by slicing.

Every dataset is drawn, split and standardized from one integer ``seed`` through a
``numpy.random.Generator`` (or scikit-learn's ``random_state``): global RNG state is never
read or left changed. Features (and regression targets) are standardized with the mean and
std of the training split only; a std below ``STD_FLOOR`` counts as 1, so constant columns
(digits has some) stay 0 instead of blowing up on val/test.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from mlp_core.user_csv import read_csv

DATASETS: dict[str, str] = {
    "spirals": "classification", "moons": "classification", "circles": "classification",
    "xor": "classification", "blobs": "classification", "digits": "classification",
    "mnist1d": "classification", "sine": "regression", "friedman1": "regression",
    "diabetes": "regression", "csv": "auto",
}
# default noise per dataset; datasets missing here take no noise
DEFAULT_NOISE = {"spirals": 0.2, "moons": 0.1, "circles": 0.1, "xor": 0.1, "blobs": 1.0,
                 "mnist1d": 0.02, "sine": 0.05, "friedman1": 1.0}
# default n_samples per dataset; None = every row of a fixed dataset
DEFAULT_N_SAMPLES = {"digits": None, "diabetes": None, "csv": None, "mnist1d": 5000}
SYNTHETIC_N_SAMPLES = 1000
OPTIONS: dict[str, dict[str, Any]] = {
    "spirals": {"n_classes": 3}, "blobs": {"n_classes": 3, "n_features": 2},
    "circles": {"factor": 0.5}, "friedman1": {"n_features": 10},
    "csv": {"path": None, "target": None, "task": "auto"},
    "mnist1d": {"canonical": True},
}
STD_FLOOR = 1e-6
MIN_SAMPLES = 10  # the smallest n_samples: 2 each for val and test, the rest to train
MNIST1D_N_SAMPLES, MNIST1D_TEST_FRAC = 5000, 0.2  # the canonical set: 4000 train / 1000 test


@dataclass
class Dataset:
    """Standardized splits; y is int64 (N,) for classification, float (N, out_dim) for regression.

    ``classes`` maps label index -> original label (csv classification only);
    ``y_mean``/``y_std`` (regression only) undo the target standardization: y * y_std + y_mean.
    """

    name: str
    task: str
    X_train: torch.Tensor = field(repr=False)
    y_train: torch.Tensor = field(repr=False)
    X_val: torch.Tensor = field(repr=False)
    y_val: torch.Tensor = field(repr=False)
    X_test: torch.Tensor = field(repr=False)
    y_test: torch.Tensor = field(repr=False)
    in_dim: int
    out_dim: int
    classes: tuple | None = None
    y_mean: torch.Tensor | None = field(default=None, repr=False)
    y_std: torch.Tensor | None = field(default=None, repr=False)


def _fail(msg: str) -> NoReturn:
    raise ValueError(msg)


def _check_int(key: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        _fail(f"{key} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _check_num(key: str, value: Any, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value < hi:
        _fail(f"{key} must be a number in [{lo}, {hi}), got {value!r}")
    return float(value)


def _check_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = OPTIONS.get(name, {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        _fail(f"unknown option {unknown[0]!r} for dataset {name!r} "
              f"(allowed: {', '.join(allowed) or 'none'})")
    opts = {k: (options[k] if options.get(k) is not None else v) for k, v in allowed.items()}
    if "n_classes" in opts:
        opts["n_classes"] = _check_int("n_classes", opts["n_classes"], 2)
    if "n_features" in opts:
        lo = 5 if name == "friedman1" else 1
        opts["n_features"] = _check_int("n_features", opts["n_features"], lo)
    if "factor" in opts:
        opts["factor"] = _check_num("factor", opts["factor"], 0.0, 1.0)
    if "canonical" in opts and not isinstance(opts["canonical"], bool):
        _fail(f"canonical must be true or false, got {opts['canonical']!r}")
    if "task" in opts and opts["task"] not in ("auto", "classification", "regression"):
        _fail(f"task must be one of auto, classification, regression, got {opts['task']!r}")
    return opts


def _mnist1d_make(**changes: Any) -> dict[str, np.ndarray]:
    """mnist1d's own ``make_dataset`` on its default arguments with ``changes``; global
    numpy / ``random`` state is put back afterwards (make_dataset reseeds both)."""
    from mnist1d.data import get_dataset_args, make_dataset  # lazy: imports matplotlib

    args = get_dataset_args()
    for k, v in changes.items():
        setattr(args, k, v)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@functools.lru_cache(maxsize=1)
def _mnist1d_published() -> tuple[np.ndarray, np.ndarray, int]:
    """The canonical set's X, y (train rows first) and its number of training rows; generated
    once per process (seconds), read-only."""
    d = _mnist1d_make()
    X, y = np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])
    X.flags.writeable = y.flags.writeable = False
    return X, y, len(d["y"])


def _mnist1d(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    d = _mnist1d_make(num_samples=n, seed=seed, iid_noise_scale=noise, train_split=1.0)
    return np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])


def _mnist1d_canonical(n_samples: int | None, noise: float, test_frac: float, val_frac: float,
                       rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """The published MNIST-1D (Greydanus 2020): the package's default arguments (seed 42,
    5000 samples, its 4000 / 1000 train / test split). The test rows are the paper's 1000 in
    the package's order; val is a seeded random ``val_frac`` of the 4000 training rows, the
    training rows keep the package's order. Returns X, y and (train, val, test) row indices."""
    if n_samples not in (None, MNIST1D_N_SAMPLES):
        _fail(f"n_samples={n_samples}: canonical mnist1d has {MNIST1D_N_SAMPLES} samples "
              "(set canonical=false to choose n_samples)")
    if noise != DEFAULT_NOISE["mnist1d"]:
        _fail(f"noise={noise}: canonical mnist1d uses noise {DEFAULT_NOISE['mnist1d']} "
              "(set canonical=false to choose noise)")
    if test_frac != MNIST1D_TEST_FRAC:
        _fail(f"test_frac={test_frac}: canonical mnist1d's test split is the paper's 1000 of "
              f"5000 samples, test_frac {MNIST1D_TEST_FRAC} (set canonical=false to choose it)")
    X, y, n_train = _mnist1d_published()
    n_val = round(val_frac * n_train)
    if val_frac > 0 and min(n_val, n_train - n_val) < 2:
        _fail(f"val_frac={val_frac} leaves fewer than 2 samples in train or val of mnist1d's "
              f"{n_train} training samples")
    perm = rng.permutation(n_train)
    parts = (np.sort(perm[n_val:]), np.sort(perm[:n_val]), np.arange(n_train, len(y)))
    return X, y, parts


def _sklearn_data_file(name: str) -> Path | None:
    """A data file shipped inside scikit-learn (sklearn/datasets/data/), found without
    importing scikit-learn; None if the installed scikit-learn has no such file."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def load_digits_xy() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `load_digits(return_X_y=True)`, read from its bundled digits.csv.gz the
    way scikit-learn reads it (`np.loadtxt`, comma-separated), without importing scikit-learn:
    that import (scipy.stats and the rest) costs ~1.3 s, ten times the parsing. The same
    arrays, bit for bit (tests/test_data.py)."""
    path = _sklearn_data_file("digits.csv.gz")
    if path is None:  # a scikit-learn that moved its files: ask it
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int, copy=False)


def _generate(name: str, n: int | None, noise: float, rng: np.random.Generator,
              opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Raw (X, y) in float64; y int labels or float targets."""
    rs = int(rng.integers(2**31 - 1))  # sklearn random_state drawn from the seeded generator
    if name == "digits":
        return load_digits_xy()
    from sklearn import datasets as skd

    if name == "spirals":  # cs231n spiral: K arms, radius 0..1, 4 rad of turn, noise on angle
        k = opts["n_classes"]
        y = np.arange(n) % k
        r = rng.uniform(0.0, 1.0, n)
        t = 2 * np.pi * y / k + 4.0 * r + rng.normal(0.0, noise, n)
        return np.stack([r * np.sin(t), r * np.cos(t)], axis=1), y
    if name == "moons":
        return skd.make_moons(n, noise=noise, random_state=rs)
    if name == "circles":
        return skd.make_circles(n, noise=noise, factor=opts["factor"], random_state=rs)
    if name == "xor":  # label = sign agreement of the coordinates, Gaussian noise on inputs
        X = rng.uniform(-1.0, 1.0, (n, 2))
        y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
        return X + rng.normal(0.0, noise, X.shape), y
    if name == "blobs":
        return skd.make_blobs(n, n_features=opts["n_features"], centers=opts["n_classes"],
                              cluster_std=noise, random_state=rs)
    if name == "sine":
        x = rng.uniform(-np.pi, np.pi, (n, 1))
        return x, np.sin(x) + rng.normal(0.0, noise, x.shape)
    if name == "friedman1":
        return skd.make_friedman1(n, n_features=opts["n_features"], noise=noise, random_state=rs)
    if name == "mnist1d":
        return _mnist1d(n, noise, rs)
    if name == "diabetes":
        return skd.load_diabetes(return_X_y=True)
    raise AssertionError(name)  # pragma: no cover


def _split_sizes(n: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    n_test, n_val = round(test_frac * n), round(val_frac * n)
    if min(n_test, n_val if val_frac > 0 else 2, n - n_test - n_val) < 2:
        _fail(f"n_samples={n} is too small to split with val_frac={val_frac}, "
              f"test_frac={test_frac} (each split needs 2 samples)")
    return n_test, n_val


def _standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return tuple((a - mean) / std for a in (train, *others)) + (mean, std)


def load_dataset(name: str, *, n_samples: int | None = None, noise: float | None = None,
                 seed: int = 0, val_frac: float = 0.2, test_frac: float = 0.2,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 **options: Any) -> Dataset:
    """Load dataset ``name`` (a key of DATASETS) as standardized train/val/test tensors.

    n_samples: total samples; None = 1000 for synthetic sets, 5000 for mnist1d and every
    row for digits, diabetes and csv (a smaller n_samples subsamples those). noise: None =
    the dataset's DEFAULT_NOISE (not accepted by digits, diabetes, csv). val_frac 0 = no
    validation split (empty val tensors). options: see OPTIONS; an option given as None takes
    its default. Bad names, options or values raise ValueError.

    mnist1d with canonical=True (the default) is the published dataset, used as the package
    makes it (no second standardization): see ``_mnist1d_canonical``; ``seed`` then only draws
    the val rows and val_frac is a fraction of the 4000 training samples.
    """
    if name not in DATASETS:
        _fail(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    opts = _check_options(name, options)
    if noise is not None and name not in DEFAULT_NOISE:
        _fail(f"noise is not an option of dataset {name!r} (leave it None)")
    noise = _check_num("noise", DEFAULT_NOISE.get(name, 0.0) if noise is None else noise, 0.0)
    n_samples = None if n_samples is None else _check_int("n_samples", n_samples, MIN_SAMPLES)
    seed = _check_int("seed", seed, 0)
    val_frac, test_frac = (_check_num(k, v, 0.0, 1.0) for k, v in
                           (("val_frac", val_frac), ("test_frac", test_frac)))
    if val_frac + test_frac >= 1:
        _fail(f"val_frac + test_frac must be < 1, got {val_frac} + {test_frac}")
    if isinstance(dtype, str):  # "float32" / "float64" from a config
        dtype = getattr(torch, dtype, dtype)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        _fail(f"dtype must be a floating torch dtype, got {dtype!r}")

    rng = np.random.default_rng(seed)
    task, classes = DATASETS[name], None
    if name == "mnist1d" and opts["canonical"]:
        X, y, parts = _mnist1d_canonical(n_samples, noise, test_frac, val_frac, rng)
        X_tr, X_va, X_te = (X[i].astype(np.float64) for i in parts)
    else:
        n_gen = n_samples or DEFAULT_N_SAMPLES.get(name, SYNTHETIC_N_SAMPLES)
        if n_gen is not None:
            _split_sizes(n_gen // 10 * 10 if name == "mnist1d" else n_gen, val_frac, test_frac)
        if name == "csv":
            X, y, task, classes = read_csv(opts["path"], opts["target"], opts["task"])
        else:
            X, y = _generate(name, n_gen, noise, rng, opts)
        n = len(X) if n_gen is None else min(len(X), n_gen)
        n_test, n_val = _split_sizes(n, val_frac, test_frac)
        perm = rng.permutation(len(X))[:n]
        parts = (perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test])  # tr/va/te
        X_tr, X_va, X_te, _, _ = _standardize(*(X[i].astype(np.float64) for i in parts))

    def as_x(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype).to(device)

    y_mean = y_std = None
    if task == "classification":
        y = np.asarray(y, dtype=np.int64)
        ys = [torch.as_tensor(y[i]).to(device) for i in parts]
        out_dim = len(classes) if classes else int(y.max()) + 1
    else:
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        *ys, y_mean, y_std = _standardize(*(y[i] for i in parts))
        ys, y_mean, y_std = [as_x(a) for a in ys], as_x(y_mean), as_x(y_std)
        out_dim = y.shape[1]
    return Dataset(name, task, as_x(X_tr), ys[0], as_x(X_va), ys[1], as_x(X_te), ys[2],
                   in_dim=X.shape[1], out_dim=out_dim, classes=classes or None,
                   y_mean=y_mean, y_std=y_std)


def batches(X: torch.Tensor, y: torch.Tensor, batch_size: int,
            generator: torch.Generator | None, shuffle: bool = True,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches (Xb, yb) covering every row once, in a seeded random order.

    The permutation is drawn from ``generator`` when this is called (not lazily), the data
    are permuted once and then sliced. drop_last drops the final incomplete batch.
    """
    n = X.shape[0]
    if y.shape[0] != n:
        _fail(f"X has {n} rows but y has {y.shape[0]}")
    batch_size = _check_int("batch_size", batch_size, 1)
    if shuffle:
        if generator is None:
            _fail("batches(shuffle=True) needs a torch.Generator")
        perm = torch.randperm(n, generator=generator, device=generator.device).to(X.device)
        # index_select: the rows' gather, 4x faster on the CPU than X[perm]'s advanced indexing
        # (1078 x 64: 61 -> 15 us), the same rows
        X, y = X.index_select(0, perm), y.index_select(0, perm)
    stop = n - n % batch_size if drop_last else n
    return ((X[i:i + batch_size], y[i:i + batch_size]) for i in range(0, stop, batch_size))
