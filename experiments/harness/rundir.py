"""A run directory on disk: atomic files, CSV appenders, and the resume/skip/refuse decision."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from experiments import record
from experiments.harness.schema import FREE_KEYS

# Keys that change nothing in a run's results: a re-launch that differs only in these resumes
# (or skips) instead of refusing. Thread counts can change float rounding in the last bits.
# The free annotation keys (notes, tags) are never part of a run's identity.
IGNORED_KEYS = ("threads", "gradcheck", "gradcheck_tol", "plot", *FREE_KEYS)


def _tmp_path(path: Path) -> Path:
    """A sibling temp name (same filesystem, so os.replace is atomic); normal permissions."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a torn one."""
    tmp = _tmp_path(path)
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def jsonable(x: Any) -> Any:
    """Plain JSON values: floats that are nan/inf become null (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    tmp = _tmp_path(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CsvLog:
    """Append rows to a CSV with a fixed header, flushed to disk after every `write`."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        new = not path.exists() or path.stat().st_size == 0
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="raise")
        if new:
            self.writer.writeheader()
            self.file.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.writer.writerows(rows)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def truncate_csv(path: Path, last_epoch: int) -> None:
    """Drop rows written after the checkpoint of `last_epoch` (a kill can land in between)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        path.unlink()
        return
    buf = io.StringIO()
    csv.writer(buf).writerows([rows[0], *(r for r in rows[1:] if r and int(r[0]) <= last_epoch)])
    atomic_write_bytes(path, buf.getvalue().encode())


@dataclass
class Decision:
    """What a launch does in a run dir: fresh | resume | skip | refuse, and why."""

    action: str
    reason: str = ""


def results_key(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a (plain) config a run's results depend on: the resume/skip/refuse key."""
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


class RunDir:
    """The files of one run (experiments/record.py), and what a launch does with them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.metrics = self.path / record.METRICS
        self.layers = self.path / record.LAYERS
        self.summary = self.path / record.SUMMARY
        self.checkpoint = self.path / record.CHECKPOINT
        self.log = self.path / record.LOG
        self.config = self.path / record.CONFIG
        self.overrides = self.path / record.OVERRIDES

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def read_config(self) -> dict[str, Any] | None:
        """The config this dir's run was started with (None if it has none or it is unreadable)."""
        try:
            cfg = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError):
            return None
        return cfg if isinstance(cfg, dict) else None

    def decide(self, config: dict[str, Any]) -> Decision:
        """Compare `config` (plain) with the one this dir's run was started with."""
        for tmp in self.path.glob(".*.tmp"):  # left by a kill during an atomic write
            tmp.unlink(missing_ok=True)
        old = self.read_config()
        if old is None:
            if self.metrics.exists() or self.summary.exists():
                return Decision("refuse", f"this run dir holds results without a readable "
                                          f"{record.CONFIG}")
            return Decision("fresh")
        key, old_key = results_key(config), results_key(old)
        if old_key != key:
            return Decision("refuse", "this run dir holds a different config: " + diff(old_key, key))
        summary = self.read_json(self.summary) or {}
        status = summary.get("status")
        if status in record.FINISHED:
            return Decision("skip", f"already {status}")
        if self.checkpoint.exists():
            return Decision("resume", f"was {status or record.INTERRUPTED}: resuming from checkpoint")
        return Decision("fresh", f"was {status or record.INTERRUPTED} before its first checkpoint")

    def start_fresh(self, config: dict[str, Any], overrides: list[str]) -> None:
        """Remove what an earlier attempt left; record the run's config and overrides, once."""
        for p in (self.metrics, self.layers, self.summary, self.checkpoint):
            p.unlink(missing_ok=True)
        atomic_write_bytes(self.overrides, yaml.safe_dump(overrides).encode())
        atomic_write_bytes(self.config, yaml.safe_dump(config, sort_keys=False).encode())

    def is_fresh_hydra_dir(self) -> bool:
        """True if the dir holds nothing but what Hydra wrote on this launch."""
        return all(p.name in (".hydra",) for p in self.path.iterdir())


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    """`key: old -> new` for every differing leaf, comma separated."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            sub = diff(a, b, f"{prefix}{k}.")
            if sub:
                out.append(sub)
        elif a != b:
            out.append(f"{prefix}{k}: {a} -> {b}")
    return ", ".join(out)
