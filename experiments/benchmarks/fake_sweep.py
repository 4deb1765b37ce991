"""Synthetic sweep trees laid out exactly like run.py's run dirs, for tests and benchmarks."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from experiments import record
from experiments.record import BASE_COLUMNS as _BASE
from experiments.record import LAYER_COLUMNS
from experiments.record import TASK_COLUMNS as TASK_METRICS

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

DEFAULT_FACTORS: dict[str, list[Any]] = {
    "activation": ["relu", "tanh", "sigmoid", "gelu", "silu"],
    "init": ["he", "xavier", "lecun", "normal"],
    "depth": [2, 4, 8, 16, 32],
}
BASE_CONFIG: dict[str, Any] = {
    "activation": "relu", "init": "he", "init_std": 0.01, "depth": 2, "width": 64,
    "batchnorm": False, "dropout": 0.0, "epochs": 20, "batch_size": 64, "seed": 0,
    "device": "cpu", "dtype": "float32", "threads": 1, "gradcheck": False,
    "data": {"name": "spirals", "n_samples": 1000, "noise": 0.2, "val_frac": 0.2,
             "test_frac": 0.2},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
              "weight_decay": 0.0, "schedule": "constant", "warmup_epochs": 0},
}
_QUALITY = {"relu": 0.9, "gelu": 0.85, "silu": 0.8, "tanh": 0.6, "sigmoid": 0.0,
            "he": 0.8, "xavier": 0.5, "lecun": 0.6, "normal": -0.4}
_GAIN = {"he": 1.0, "xavier": 0.72, "lecun": 0.8, "normal": 0.3}


def _set(cfg: dict, key: str, value: Any) -> None:
    """Set a dotted key ("optim.lr") in a nested dict."""
    *parents, leaf = key.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[leaf] = value


def _write_config(d: Path, cfg: dict, overrides: list[str]) -> None:
    """The run's config record and its overrides, where the harness writes them."""
    d.mkdir(parents=True, exist_ok=True)
    (d / record.CONFIG).write_text(yaml.dump(cfg, Dumper=_Dumper, sort_keys=False))
    (d / record.OVERRIDES).write_text(yaml.dump(overrides, Dumper=_Dumper))


def _score(levels: Mapping[str, Any]) -> float:
    """A made-up quality of a configuration: higher trains better."""
    s = sum(_QUALITY.get(str(v), 0.0) for v in levels.values())
    depth = levels.get("depth")
    if isinstance(depth, int):
        s -= 0.04 * depth * (2.0 if levels.get("activation") == "sigmoid" else 1.0)
    if "optim.lr" in levels:
        s -= abs(math.log10(float(levels["optim.lr"]) / 0.1)) * 0.8
    return s


def _fmt_rows(arr: np.ndarray, names: Sequence[str] | None = None) -> str:
    """CSV body for a float array; names (if given) is inserted as the third column."""
    lines = []
    for i, row in enumerate(arr.tolist()):
        cells = [repr(int(row[0])), repr(int(row[1]))] + [f"{v:.6g}" for v in row[2:]]
        if names is not None:
            cells.insert(2, names[i])
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n" if lines else ""


def _metrics(rng: np.random.Generator, score: float, n_epochs: int, task: str,
             stop: int, diverged: bool, depth: int) -> np.ndarray:
    """metrics.csv rows (epochs 0..stop) as a float array in column order."""
    e = np.arange(stop + 1, dtype=float)
    final = 1 / (1 + math.exp(-score))  # 0..1 quality
    progress = 1 - np.exp(-e / max(n_epochs / 6, 1.0))
    noise = rng.normal(0, 0.01, e.size)
    quality = np.clip(progress * final + noise, 0, 1)
    val_loss = 1.1 * (1 - quality) + 0.05 + np.abs(rng.normal(0, 0.01, e.size))
    train_loss = val_loss * 0.9
    epoch_time = np.where(e == 0, 0.0, 0.02 * depth * (1 + 0.1 * rng.random(e.size)))
    cols = [e, e * 15, np.full(e.size, 0.1), train_loss, val_loss,
            np.exp(-e / 10) + 0.1, 5 + 0.01 * e, epoch_time,
            np.where(e == 0, 0.0, 960 / np.maximum(epoch_time, 1e-9))]
    if task == "classification":
        val_acc = 0.33 + 0.67 * quality
        cols += [np.clip(val_acc + 0.01, 0, 1), val_acc]
    else:
        val_mse = val_loss
        cols += [train_loss, val_mse, 1 - val_mse]
    arr = np.column_stack(cols)
    if diverged:
        arr[-1, 3:5] = [math.inf, math.nan]
        arr[-1, 9:] = math.nan
    return arr


def _layers(rng: np.random.Generator, init: str, depth: int, stop: int) -> tuple[np.ndarray,
                                                                              list[str]]:
    """layers.csv rows (every layer at every epoch 0..stop) and the layer names."""
    gain = _GAIN.get(init, 0.9)
    n_layers = depth + 1
    layer = np.tile(np.arange(n_layers), stop + 1)
    epoch = np.repeat(np.arange(stop + 1), n_layers)
    act_std = gain ** layer * (1 + 0.05 * rng.random(layer.size)) * (1 + 0.02 * epoch)
    grad = 0.1 / np.maximum(gain, 0.1) ** (n_layers - layer) * (1 + 0.05 * rng.random(layer.size))
    arr = np.column_stack([
        epoch, layer, 0.1 * act_std, act_std, np.clip(0.5 - gain / 2, 0, 1) * np.ones(layer.size),
        grad, 8.0 + 0.01 * epoch, np.where(epoch == 0, math.nan, 1e-3),
        *(q * act_std for q in (-1.04, 0.0, 1.04) * 2),  # pre-activation percentiles ~ N(0, std)
    ])
    arr[layer == depth, 4] = math.nan  # no saturation figure for the output layer
    return arr, [f"fc{i}" for i in layer]


def make_fake_sweep(root: str | Path, n_runs: int, n_epochs: int, seed: int = 0, *,
                    factors: Mapping[str, Sequence[Any]] | None = None,
                    task: str = "classification", p_diverged: float = 0.02,
                    p_failed: float = 0.01, status_of: Mapping[int, str] | None = None,
                    ) -> Path:
    """Write a synthetic multirun under root: jobs 0..n_runs-1, each a full run dir.

    Runs walk the factor grid (default: activation x init x depth, 100 configs), seed
    outermost, so 1000 runs = 100 configs x 10 seeds. Statuses are drawn with p_diverged
    and p_failed unless status_of (job index -> completed|diverged|failed|running|
    no_summary) fixes them. Returns root.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    factors = dict(DEFAULT_FACTORS if factors is None else factors)
    grid = list(itertools.product(*factors.values()))
    rng = np.random.default_rng(seed)
    header = ",".join(_BASE + TASK_METRICS[task]) + "\n"
    typed = [f"{k}={','.join(map(str, v))}" for k, v in factors.items()]
    (root / "multirun.yaml").write_text(yaml.dump(
        {"hydra": {"mode": "MULTIRUN", "overrides": {"task": typed}}}, Dumper=_Dumper))
    for i in range(n_runs):
        levels = dict(zip(factors, grid[i % len(grid)], strict=True))
        run_seed = i // len(grid)
        cfg = json.loads(json.dumps(BASE_CONFIG))
        cfg["epochs"], cfg["seed"] = n_epochs, run_seed
        for k, v in levels.items():
            _set(cfg, k, v)
        if task == "regression":
            cfg["data"].update(name="friedman1", noise=1.0)
        status = (status_of or {}).get(i)
        if status is None:
            u = rng.random()
            status = ("diverged" if u < p_diverged else
                      "failed" if u < p_diverged + p_failed else "completed")
        stop = n_epochs if status in ("completed", "no_summary") else int(rng.integers(0,
                                                                                     n_epochs))
        depth = int(cfg["depth"])
        run_rng = np.random.default_rng([seed, i])
        metrics = _metrics(run_rng, _score(levels), n_epochs, task, stop,
                           status == "diverged", depth)
        layers, names = _layers(run_rng, str(cfg["init"]), depth, stop)
        d = root / str(i)
        overrides = [f"{k}={v}" for k, v in levels.items()] + [f"seed={run_seed}",
                                                                f"epochs={n_epochs}"]
        _write_config(d, cfg, overrides)
        (d / record.METRICS).write_text(header + _fmt_rows(metrics))
        (d / record.LAYERS).write_text(",".join(LAYER_COLUMNS) + "\n" + _fmt_rows(layers, names))
        (d / record.LOG).write_text(f"fake run {i}: {status}\n")
        if status == "no_summary":
            continue
        last = dict(zip(_BASE + TASK_METRICS[task], metrics[-1].tolist(), strict=True))
        summary = {
            "status": status, "task": task, "dataset": cfg["data"]["name"],
            "final": last, "best": {}, "test": {}, "epochs_completed": stop,
            "wall_time_s": float(metrics[:, 7].sum() + 0.5), "n_params": 1000 * depth,
            "gradcheck_max_rel_err": None,
            "error": "RuntimeError: fake failure" if status == "failed" else None,
            "versions": {},
        }
        (d / record.SUMMARY).write_text(json.dumps(summary, allow_nan=True))
    return root


def write_run(d: str | Path, levels: Mapping[str, Any], seed: int, status: str, final: float,
              n_epochs: int = 5, stop: int | None = None, task: str = "classification",
              test: float | None = None) -> Path:
    """One run dir with a known result: val_acc rises linearly from 0.1 (epoch 0) to `final`
    at the last epoch written (n_epochs, or `stop`). status "diverged" ends with a non-finite
    loss at `stop`; "failed_at_start" writes only the record (summary failed, no CSVs);
    "running" writes epochs 0..stop and a running summary. For tests with a known truth."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(BASE_CONFIG))
    cfg["epochs"], cfg["seed"] = n_epochs, seed
    for k, v in levels.items():
        _set(cfg, k, v)
    overrides = [f"{k}={v}" for k, v in levels.items()] + [f"seed={seed}"]
    _write_config(d, cfg, overrides)
    cols = _BASE + TASK_METRICS[task]
    last = n_epochs if stop is None else stop
    summary: dict[str, Any] = {"status": "failed" if status == "failed_at_start" else status,
                               "task": task, "final": {}, "best": {}, "test": {},
                               "epochs_completed": 0, "wall_time_s": 1.0, "versions": {},
                               "error": "RuntimeError: fake failure" if "failed" in status
                               else None}
    if status != "failed_at_start":
        e = np.arange(last + 1, dtype=float)
        acc = 0.1 + (final - 0.1) * e / max(last, 1)
        loss = 2.3 * (1 - acc) + 0.05
        rows = np.column_stack([e, e * 10, np.full(e.size, 0.1), loss, loss, np.ones(e.size),
                                np.full(e.size, 5.0), np.full(e.size, 0.01),
                                np.full(e.size, 1000.0), acc, acc])
        if status == "diverged":
            rows[-1, 3:5] = [math.inf, math.nan]
        (d / record.METRICS).write_text(",".join(cols) + "\n" + _fmt_rows(rows))
        summary.update(final=dict(zip(cols, rows[-1].tolist(), strict=True)),
                       epochs_completed=last)
        if test is not None:
            summary["test"] = {"test_acc": test, "test_loss": 2.3 * (1 - test)}
    (d / record.SUMMARY).write_text(json.dumps(summary, allow_nan=True))
    return d


def make_known_sweep(root: str | Path, runs: Sequence[Mapping[str, Any]],
                     n_epochs: int = 5) -> Path:
    """A sweep of runs with known results: each item has "levels" (factor -> level), "seed",
    "status" and "final" (the last val_acc), optionally "stop" and "test"; job i -> root/i."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in runs for k in r["levels"]))
    task = [f"{k}={','.join(dict.fromkeys(str(r['levels'][k]) for r in runs))}" for k in keys]
    (root / "multirun.yaml").write_text(yaml.dump(
        {"hydra": {"mode": "MULTIRUN", "overrides": {"task": task}}}, Dumper=_Dumper))
    for i, r in enumerate(runs):
        write_run(root / str(i), r["levels"], int(r.get("seed", 0)), r.get("status", "completed"),
                  float(r.get("final", 0.5)), n_epochs, r.get("stop"), test=r.get("test"))
    return root
