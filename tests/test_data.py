"""Tests for mlp_core.data: datasets, standardization, seeding, csv errors, batching."""

import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from mlp_core.data import DATASETS, Dataset, batches, load_dataset

BUILTIN = [name for name in DATASETS if name != "csv"]
SMALL = {"mnist1d": {"n_samples": 300, "canonical": False}}  # keep mnist1d generation fast


def load(name: str, **kw) -> Dataset:
    return load_dataset(name, **{**SMALL.get(name, {}), **kw})


def splits(d: Dataset):
    return [(d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)]


def test_datasets_maps_each_name_to_its_task():
    assert set(DATASETS) == {"spirals", "moons", "circles", "xor", "blobs", "digits", "mnist1d",
                             "sine", "friedman1", "diabetes", "csv"}
    assert DATASETS["csv"] == "auto" and DATASETS["sine"] == "regression"


@pytest.mark.parametrize("name", BUILTIN)
def test_every_dataset_has_split_tensors_of_the_right_shape_and_dtype(name):
    d = load(name)
    assert d.name == name and d.task == DATASETS[name]
    sizes = [len(X) for X, _ in splits(d)]
    total = sum(sizes)
    assert sizes[1] == round(0.2 * total) and sizes[2] == round(0.2 * total)
    for X, y in splits(d):
        assert X.shape == (len(y), d.in_dim) and X.dtype == torch.float32
        assert X.device.type == "cpu" and torch.isfinite(X).all()
        if d.task == "classification":
            assert y.dtype == torch.int64 and y.ndim == 1
            assert 0 <= int(y.min()) and int(y.max()) < d.out_dim
        else:
            assert y.dtype == torch.float32 and y.shape == (len(X), d.out_dim)


@pytest.mark.parametrize("name", BUILTIN)
def test_features_are_standardized_on_the_training_split(name):
    d = load(name, dtype=torch.float64)
    mean, std = d.X_train.mean(0), d.X_train.std(0, unbiased=False)
    assert mean.abs().max() < 1e-9
    varying = std > 0.5  # constant columns (digits) stay exactly 0
    assert torch.allclose(std[varying], torch.ones_like(std[varying]))
    assert (d.X_train[:, ~varying] == 0).all()
    if d.task == "regression":
        assert d.y_train.mean(0).abs().max() < 1e-9
        assert torch.allclose(d.y_train.std(0, unbiased=False), torch.ones(d.out_dim,
                                                                          dtype=torch.float64))
        assert d.y_mean.shape == d.y_std.shape == (d.out_dim,)


def test_digits_constant_pixels_stay_finite_and_bounded_on_val_and_test():
    d = load_dataset("digits")
    assert (d.X_train.std(0) == 0).any()  # the pitfall is really there
    for X in (d.X_val, d.X_test):
        assert torch.isfinite(X).all() and X.abs().max() < 100


@pytest.mark.parametrize("name", ["spirals", "moons", "xor", "sine", "friedman1", "digits",
                                  "mnist1d"])
def test_same_seed_gives_same_tensors_and_another_seed_different_ones(name):
    a, b, c = load(name, seed=3), load(name, seed=3), load(name, seed=4)
    for (Xa, ya), (Xb, yb) in zip(splits(a), splits(b), strict=True):
        assert torch.equal(Xa, Xb) and torch.equal(ya, yb)
    assert not torch.equal(a.X_train, c.X_train)


def test_noise_changes_the_data_and_defaults_apply():
    assert torch.equal(load_dataset("moons").X_train, load_dataset("moons", noise=0.1).X_train)
    assert not torch.equal(load_dataset("moons").X_train,
                           load_dataset("moons", noise=0.3).X_train)


def test_options_set_the_number_of_classes_and_features():
    d = load_dataset("spirals", n_classes=5, n_samples=500)
    assert d.out_dim == 5 and set(d.y_train.tolist()) == set(range(5)) and d.in_dim == 2
    d = load_dataset("blobs", n_classes=4, n_features=3)
    assert (d.in_dim, d.out_dim) == (3, 4)
    assert load_dataset("friedman1", n_features=7).in_dim == 7
    assert load_dataset("circles", factor=0.3).out_dim == 2
    assert load_dataset("spirals", n_classes=None).out_dim == 3  # None = default
    assert (load_dataset("digits").out_dim, load("mnist1d").out_dim) == (10, 10)


def total(d: Dataset) -> int:
    return sum(len(X) for X, _ in splits(d))


def test_n_samples_defaults_and_subsampling_of_fixed_datasets():
    assert total(load_dataset("moons")) == 1000
    assert total(load_dataset("moons", n_samples=250)) == 250
    assert total(load_dataset("digits")) == 1797
    assert total(load_dataset("diabetes")) == 442
    assert total(load_dataset("digits", n_samples=500)) == 500
    assert total(load_dataset("diabetes", n_samples=10_000)) == 442


def test_dtype_and_device_follow_the_request():
    d = load_dataset("sine", dtype="float64", n_samples=100)
    assert d.X_train.dtype == d.y_train.dtype == torch.float64
    if torch.cuda.is_available():
        d = load_dataset("moons", device="cuda", n_samples=100)
        assert d.X_train.is_cuda and d.y_test.is_cuda


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "nope"}, "unknown dataset 'nope'"),
    ({"name": "moons", "n_classes": 3}, "unknown option 'n_classes'"),
    ({"name": "spirals", "n_classes": 1}, "n_classes"),
    ({"name": "circles", "factor": 1.5}, "factor"),
    ({"name": "friedman1", "n_features": 3}, "n_features"),
    ({"name": "digits", "noise": 0.1}, "noise is not an option of dataset 'digits'"),
    ({"name": "moons", "noise": -1.0}, "noise"),
    ({"name": "moons", "val_frac": 0.6, "test_frac": 0.5}, "val_frac \\+ test_frac"),
    ({"name": "moons", "test_frac": 1.5}, "test_frac"),
    ({"name": "moons", "n_samples": 9}, "n_samples must be an integer >= 10"),
    ({"name": "moons", "n_samples": 10, "val_frac": 0.05}, "too small"),
    ({"name": "moons", "n_samples": 0}, "n_samples"),
    ({"name": "moons", "dtype": torch.int64}, "dtype"),
    ({"name": "csv", "task": "foo"}, "task must be one of"),
    ({"name": "csv"}, "needs option path"),
])
def test_bad_names_options_and_values_raise_a_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


def test_mnist1d_leaves_global_rng_state_and_cwd_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state(), random.getstate()
    torch_before = torch.get_rng_state()
    d = load_dataset("mnist1d", n_samples=200, canonical=False)
    assert d.in_dim == 40
    np_after = np.random.get_state()
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert random.getstate() == py_before and torch.equal(torch.get_rng_state(), torch_before)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def published() -> dict:
    """mnist1d's own canonical set, made the package's way (never get_dataset: it downloads)."""
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # make_dataset reseeds numpy and random globally
        return make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def test_canonical_mnist1d_is_the_packages_own_train_and_test_set_row_by_row(published):
    assert len(published["y"]) == 4000 and len(published["y_test"]) == 1000
    d = load_dataset("mnist1d", val_frac=0.0, dtype=torch.float64)
    assert d.X_val.shape == (0, 40) and d.y_val.shape == (0,)
    assert torch.equal(d.X_train, torch.from_numpy(published["x"]))
    assert torch.equal(d.y_train, torch.from_numpy(published["y"]).long())
    assert torch.equal(d.X_test, torch.from_numpy(published["x_test"]))
    assert torch.equal(d.y_test, torch.from_numpy(published["y_test"]).long())
    assert load_dataset("mnist1d").X_test.dtype == torch.float32  # float32 by default


def test_canonical_mnist1d_carves_val_from_the_training_rows_and_keeps_the_test_set(published):
    x, y = torch.from_numpy(published["x"]), torch.from_numpy(published["y"]).long()
    a, b = (load_dataset("mnist1d", val_frac=0.25, seed=s, dtype=torch.float64) for s in (0, 1))
    for d in (a, b):
        assert (len(d.y_train), len(d.y_val)) == (3000, 1000)
        assert torch.equal(d.X_test, torch.from_numpy(published["x_test"]))
        rows = {tuple(r.tolist()): i for i, r in enumerate(x)}
        tr = [rows[tuple(r.tolist())] for r in d.X_train]
        va = [rows[tuple(r.tolist())] for r in d.X_val]
        assert sorted(tr + va) == list(range(4000))  # train + val = the 4000, each once
        assert tr == sorted(tr)  # training rows keep the package's order
        assert torch.equal(d.y_train, y[tr]) and torch.equal(d.y_val, y[va])
    assert not torch.equal(a.X_val, b.X_val)  # data.seed draws the val rows


@pytest.mark.parametrize("kwargs, match", [
    ({"n_samples": 300}, "n_samples=300: canonical mnist1d"),
    ({"noise": 0.1}, "noise=0.1: canonical mnist1d"),
    ({"test_frac": 0.3}, "test_frac=0.3: canonical mnist1d"),
    ({"val_frac": 0.0001}, "val_frac=0.0001 leaves fewer than 2"),
    ({"canonical": "yes"}, "canonical must be true or false"),
])
def test_canonical_mnist1d_refuses_what_would_change_the_published_set(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist1d", **kwargs)


def test_canonical_mnist1d_leaves_global_rng_state_alone(tmp_path, monkeypatch):
    from mlp_core import data

    monkeypatch.chdir(tmp_path)
    data._mnist1d_published.cache_clear()  # really generate it here
    np.random.seed(7)
    random.seed(7)
    np_before, py_before = np.random.get_state(), random.getstate()
    load_dataset("mnist1d")
    assert np.array_equal(np.random.get_state()[1], np_before[1])
    assert random.getstate() == py_before and os.listdir(tmp_path) == []


def test_val_frac_zero_gives_an_empty_val_split_for_any_dataset():
    d = load_dataset("moons", val_frac=0.0)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (800, 0, 200)


def test_importing_data_does_not_import_matplotlib_pandas_or_hydra():
    code = ("import sys, mlp_core.data; "
            "bad = {'matplotlib', 'pandas', 'hydra'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- csv ---------------------------------------------------------------------------------

def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def table(target_values) -> str:
    rows = [f"{i * 0.5},{(i * 7) % 5},{v}" for i, v in enumerate(target_values)]
    return "a,b,label\n" + "\n".join(rows) + "\n"


def test_csv_string_labels_become_class_indices_with_their_mapping(tmp_path):
    path = write(tmp_path, table(["cat", "dog", "bird"] * 10))
    d = load_dataset("csv", path=path, target="label")
    assert d.task == "classification" and d.classes == ("bird", "cat", "dog")
    assert (d.in_dim, d.out_dim) == (2, 3) and d.y_train.dtype == torch.int64


def test_csv_task_is_inferred_from_the_target(tmp_path):
    ints = load_dataset("csv", path=write(tmp_path, table([0, 1, 5] * 10)), target="label")
    assert ints.task == "classification" and ints.classes == (0, 1, 5)
    floats = write(tmp_path, table([i * 0.37 for i in range(30)]), "f.csv")
    d = load_dataset("csv", path=floats, target="label")
    assert d.task == "regression" and d.y_train.shape[1] == 1 and d.classes is None
    d = load_dataset("csv", path=floats, target="label", task="classification")
    assert d.out_dim == 30
    many = write(tmp_path, table(list(range(30))), "m.csv")
    assert load_dataset("csv", path=many, target="label").task == "regression"
    assert load_dataset("csv", path=many, target="label", task="classification").out_dim == 30


def test_csv_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="csv file not found: .*nope.csv"):
        load_dataset("csv", path=str(tmp_path / "nope.csv"), target="y")


@pytest.mark.parametrize("text, target, match", [
    ("a,b,label\n1,2,3\n", "y", "target column 'y' not found .*available columns: a, b, label"),
    ("a,b,label\n1,x,3\n2,,4\n", "label", "non-numeric value 'x' in feature column 'b', row 2$"),
    ("", "label", "is empty"),
    ("a,b,label\n", "label", "no data rows"),
    ("a,b,label\n1,2\n", "label", "row 2 has 2 fields"),
    ("a,label\n1,x\n2,y\n", "label", None),
])
def test_csv_errors_are_one_clear_line(tmp_path, text, target, match):
    path = write(tmp_path, text)
    if match is None:  # string target asked to be a regression target
        with pytest.raises(ValueError, match="not numeric; use task=classification"):
            load_dataset("csv", path=path, target=target, task="regression")
        return
    with pytest.raises(ValueError, match=match) as err:
        load_dataset("csv", path=path, target=target)
    assert "\n" not in str(err.value)


# --- batches -----------------------------------------------------------------------------

def test_batches_cover_every_sample_exactly_once():
    X, y = torch.arange(103.0).unsqueeze(1), torch.arange(103)
    parts = list(batches(X, y, 10, torch.Generator().manual_seed(0)))
    assert [len(yb) for _, yb in parts] == [10] * 10 + [3]
    seen = torch.cat([yb for _, yb in parts])
    assert sorted(seen.tolist()) == list(range(103)) and not torch.equal(seen, y)
    assert all(torch.equal(Xb[:, 0].long(), yb) for Xb, yb in parts)  # rows stay paired


def test_batches_drop_last_and_no_shuffle():
    X, y = torch.zeros(103, 2), torch.arange(103)
    parts = list(batches(X, y, 10, torch.Generator().manual_seed(0), drop_last=True))
    assert [len(yb) for _, yb in parts] == [10] * 10
    ordered = torch.cat([yb for _, yb in batches(X, y, 32, None, shuffle=False)])
    assert torch.equal(ordered, y)


def test_batches_order_is_set_by_the_generator_seed():
    X, y = torch.zeros(50, 1), torch.arange(50)

    def order(seed: int) -> torch.Tensor:
        return torch.cat([yb for _, yb in batches(X, y, 8, torch.Generator().manual_seed(seed))])

    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"generator": None}, "needs a torch.Generator"),
    ({"y": torch.arange(3)}, "rows"),
])
def test_batches_bad_arguments_raise(kwargs, match):
    args = {"X": torch.zeros(5, 1), "y": torch.arange(5), "batch_size": 2,
            "generator": torch.Generator(), **kwargs}
    with pytest.raises(ValueError, match=match):
        batches(**args)


def test_digits_are_scikit_learns_bit_for_bit_without_importing_it() -> None:
    from sklearn.datasets import load_digits

    from mlp_core.data import load_digits_xy

    X, y = load_digits_xy()
    X_sk, y_sk = load_digits(return_X_y=True)
    assert X.dtype == X_sk.dtype and y.dtype == y_sk.dtype
    assert np.array_equal(X, X_sk) and np.array_equal(y, y_sk)
    code = ("import sys; from mlp_core.data import load_dataset; d = load_dataset('digits'); "
            "print(d.X_train.shape[0], 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1079", "False"]  # 1797 - 359 val - 359 test
