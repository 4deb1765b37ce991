"""Find run dirs by their run record (summary.json, config.json or metrics.csv) and read them
into pandas frames, fast."""

from __future__ import annotations

import io
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from experiments import record
from experiments.record import CONFIG, LAYERS, METRICS, OVERRIDES, SUMMARY

RECORD = (SUMMARY, CONFIG, METRICS)  # any of these marks a run dir, started or not
SWEEP_MARK = "multirun.yaml"  # Hydra's record of a sweep, in the sweep dir

META_COLUMNS = ("run_dir", "status", "task", "wall_time_s", "error", "config_ok")  # not config
STATUSES = (*record.STATUSES, "incomplete", "corrupt")  # + no summary.json / unreadable CSV
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class RunSet:
    """Every run found: one row per run, plus its per-epoch and per-layer logs (long form)."""

    runs: pd.DataFrame     # index run_id: run_dir, status, task, wall_time_s, error, config keys
    metrics: pd.DataFrame  # run_id, epoch, <metrics.csv columns>
    layers: pd.DataFrame   # run_id, epoch, layer, name, act_std, grad_norm, ...
    finals: pd.DataFrame = field(default_factory=pd.DataFrame)  # index run_id: test_acc, ...
    config_keys: list[str] = field(default_factory=list)  # flattened, first-seen order
    swept_keys: list[str] = field(default_factory=list)   # keys named in the runs' overrides
    warnings: list[str] = field(default_factory=list)


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run dirs = dirs holding a run record file (RECORD) under paths, naturally sorted: a run
    that failed before its first epoch has a summary.json but no metrics.csv."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file() and p.name in RECORD:
            found.add(p.parent)
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "compare"
                           and not d.startswith("compare-")]
            if any(f in filenames for f in RECORD):
                found.add(Path(dirpath))
    return sorted(found, key=_natural_key)


def sweep_of(run_dir: Path, roots: list[Path]) -> Path:
    """The sweep a run belongs to: the nearest parent holding multirun.yaml, else the PATH
    given on the command line that holds it."""
    for d in run_dir.parents:
        if (d / SWEEP_MARK).exists():
            return d
        if d in roots:
            return d
    return run_dir.parent


def sweep_labels(dirs: list[Path], roots: list[Path]) -> list[str]:
    """A short name per run for its sweep: the sweep dir's name, or its path when names clash."""
    sweeps = [sweep_of(d, roots) for d in dirs]
    names = {s: s.name or str(s) for s in set(sweeps)}
    if len(set(names.values())) < len(names):
        names = {s: str(s) for s in names}
    return [names[s] for s in sweeps]


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}; lists become strings (hashable levels)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list | tuple):
            out[key] = str(list(v))
        else:
            out[key] = v
    return out


def _check_csv(data: bytes, required: tuple[str, ...]) -> str | None:
    """Why this CSV cannot be used (None if it is fine). Numeric CSVs hold no quoted commas."""
    if not data.strip():
        return "empty file"
    if not data.endswith(b"\n"):
        return "truncated: the last line is incomplete"
    header, _, body = data.partition(b"\n")
    cols = header.rstrip(b"\r").decode("utf-8", "replace").split(",")
    missing = [c for c in required if c not in cols]
    if missing:
        return f"header lacks {', '.join(missing)}"
    if body.count(b",") != body.count(b"\n") * (len(cols) - 1):
        return f"a row does not have the {len(cols)} fields of the header"
    return None


def _parse(buf: bytes, cols: list[str]) -> pd.DataFrame:
    if not buf:
        return pd.DataFrame(columns=cols)
    return pd.read_csv(io.BytesIO(buf), header=None, names=cols, engine="c",
                       skip_blank_lines=False)


def _non_numeric(df: pd.DataFrame, text_cols: tuple[str, ...]) -> list[str]:
    return [c for c in df.columns if c not in text_cols and not pd.api.types.is_numeric_dtype(df[c])]


def read_csv_batch(items: list[tuple[int, Path]], required: tuple[str, ...],
                   text_cols: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict[int, str]]:
    """Parse many same-shaped CSVs at once: bodies sharing a header are joined and read by one
    C-engine call, with run_id from per-file row counts. Returns (frame, {run_id: problem})."""
    groups: dict[bytes, tuple[list[int], list[int], list[bytes]]] = {}
    bad: dict[int, str] = {}
    for run_id, path in items:
        try:
            data = path.read_bytes()
        except OSError as e:
            bad[run_id] = f"cannot read {path}: {e.strerror}"
            continue
        problem = _check_csv(data, required)
        if problem:
            bad[run_id] = f"{path}: {problem}"
            continue
        header, _, body = data.partition(b"\n")
        if not body.strip():
            continue  # a header and no rows: nothing logged (log_layers=false), not damage
        ids, counts, bodies = groups.setdefault(header.rstrip(b"\r"), ([], [], []))
        ids.append(run_id)
        counts.append(body.count(b"\n"))
        bodies.append(body)
    frames = []
    for header, (ids, counts, bodies) in groups.items():
        cols = header.decode().split(",")
        try:
            df = _parse(b"".join(bodies), cols)
            ok = not _non_numeric(df, text_cols) and len(df) == sum(counts)
        except (ValueError, pd.errors.ParserError):
            ok = False
        if ok:
            df.insert(0, "run_id", np.repeat(np.asarray(ids, dtype=np.int64), counts))
            frames.append(df)
            continue
        paths = dict(items)
        for run_id, body in zip(ids, bodies, strict=True):  # slow path: find the bad files
            path = paths[run_id]
            try:
                df = _parse(body, cols)
            except (ValueError, pd.errors.ParserError) as e:
                bad[run_id] = f"{path}: unreadable ({str(e).splitlines()[0]})"
                continue
            wrong = _non_numeric(df, text_cols)
            if wrong:
                bad[run_id] = f"{path}: non-numeric values in {', '.join(wrong)}"
                continue
            df.insert(0, "run_id", run_id)
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["run_id", *required]), bad
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return out, bad


def _read_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)


def _override_keys(overrides: Any) -> list[str]:
    """["+experiment=x", "optim.lr=0.1", "data=moons"] -> ["experiment", "optim.lr", "data"]."""
    keys = []
    for item in overrides if isinstance(overrides, list) else []:
        key = str(item).split("=", 1)[0].lstrip("+~")
        if key and not key.startswith("hydra"):
            keys.append(key)
    return keys


def _read_meta(run_id: int, d: Path, warns: list[str]) -> tuple[dict, list[str]]:
    """One run's row (config + summary fields) and its override keys."""
    row: dict[str, Any] = {"run_dir": str(d), "status": "incomplete", "task": None,
                           "wall_time_s": math.nan, "error": None, "config_ok": False}
    keys: list[str] = []
    try:
        cfg = _read_yaml(d / CONFIG)
        row.update(flatten(cfg if isinstance(cfg, dict) else {}))
        row["config_ok"] = isinstance(cfg, dict)
    except FileNotFoundError:
        warns.append(f"{d / CONFIG}: missing; this run's config is unknown")
    except (OSError, yaml.YAMLError) as e:
        warns.append(f"{d / CONFIG}: unreadable ({type(e).__name__}); config unknown")
    try:
        keys = _override_keys(_read_yaml(d / OVERRIDES))
    except (OSError, yaml.YAMLError):
        pass
    try:
        with open(d / SUMMARY, encoding="utf-8") as f:
            s = json.load(f)
        row["status"] = str(s.get("status") or "incomplete")
        row["task"] = s.get("task")
        row["wall_time_s"] = s.get("wall_time_s", math.nan)
        row["error"] = s.get("error")
        row["_finals"] = {k: v for k, v in (s.get("test") or {}).items()
                          if isinstance(v, int | float) and not isinstance(v, bool)}
    except FileNotFoundError:
        pass  # never finished writing: incomplete
    except (OSError, ValueError, AttributeError):
        warns.append(f"{d / SUMMARY}: unreadable; status taken as incomplete")
    return row, keys


def load_runs(paths: Iterable[str | Path]) -> RunSet:
    """Read every run under paths. Corrupt CSVs are skipped with a warning naming the file:
    a bad metrics.csv marks its run "corrupt" (listed, never averaged)."""
    paths = [Path(p) for p in paths]
    dirs = find_runs(paths)
    warns: list[str] = []
    rows, finals_rows, config_keys, swept = [], [], {}, {}
    for run_id, d in enumerate(dirs):
        row, keys = _read_meta(run_id, d, warns)
        finals_rows.append(row.pop("_finals", {}))
        rows.append(row)
        config_keys.update(dict.fromkeys(k for k in row if k not in META_COLUMNS))
        swept.update(dict.fromkeys(keys))
    finals = pd.DataFrame(finals_rows, index=pd.RangeIndex(len(rows), name="run_id"),
                          dtype=float)
    runs = pd.DataFrame(rows, index=pd.RangeIndex(len(rows), name="run_id"))
    runs["sweep"] = sweep_labels(dirs, paths) if dirs else []
    config_keys = {"sweep": None, **config_keys}
    metrics, bad = read_csv_batch([(i, d / METRICS) for i, d in enumerate(dirs)
                                   if (d / METRICS).exists()], ("epoch",))
    for run_id, msg in bad.items():
        warns.append(f"{msg}; run skipped (status corrupt)")
        runs.loc[run_id, "status"] = "corrupt"
    layers, bad_layers = read_csv_batch(
        [(i, d / LAYERS) for i, d in enumerate(dirs) if (d / LAYERS).exists()],
        ("epoch", "layer"), text_cols=("name",))
    warns += [f"{msg}; its per-layer plots skip this run" for msg in bad_layers.values()]
    # a resumed run may repeat epochs: keep the last row written for each epoch
    if metrics.duplicated(["run_id", "epoch"]).any():
        metrics = metrics.drop_duplicates(["run_id", "epoch"], keep="last")
    if len(metrics):
        missing = runs["wall_time_s"].isna() & runs.index.isin(metrics["run_id"])
        if missing.any() and "epoch_time_s" in metrics:
            totals = metrics.groupby("run_id")["epoch_time_s"].sum()
            runs.loc[missing, "wall_time_s"] = totals.reindex(runs.index[missing]).to_numpy()
    return RunSet(runs=runs, metrics=metrics.reset_index(drop=True), layers=layers, finals=finals,
                  config_keys=list(config_keys), swept_keys=list(swept), warnings=warns)
