"""A run directory on disk: atomic files, CSV appenders, and the resume/skip/refuse decision."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FINAL_STATUSES = ("completed", "diverged")  # a re-launch skips these; running/failed resume


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


class RunDir:
    """The files of one run (DESIGN.md "A run directory") plus `config.json`, the resume key."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.metrics = self.path / "metrics.csv"
        self.layers = self.path / "layers.csv"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.log = self.path / "run.log"
        self.config = self.path / "config.json"
        self.first_hydra = self.path / ".hydra" / "first"

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def decide(self, key: dict[str, Any]) -> Decision:
        """Compare `key` (the results-relevant config) with the one this dir was started with."""
        for tmp in self.path.glob(".*.tmp"):  # left by a kill during an atomic write
            tmp.unlink(missing_ok=True)
        old = self.read_json(self.config)
        if old is None:
            return Decision("fresh")
        if old != key:
            return Decision("refuse", "this run dir holds a different config: " + diff(old, key))
        summary = self.read_json(self.summary) or {}
        status = summary.get("status")
        if status in FINAL_STATUSES:
            return Decision("skip", f"already {status}")
        if self.checkpoint.exists():
            return Decision("resume", f"was {status or 'interrupted'}: resuming from checkpoint")
        return Decision("fresh", f"was {status or 'interrupted'} before its first checkpoint")

    def start_fresh(self, key: dict[str, Any]) -> None:
        """Remove what an earlier attempt left, record the config and a copy of .hydra/."""
        for p in (self.metrics, self.layers, self.summary, self.checkpoint):
            p.unlink(missing_ok=True)
        atomic_write_json(self.config, key)
        self.snapshot_hydra()

    def snapshot_hydra(self) -> None:
        """Keep the first launch's .hydra/*.yaml: Hydra rewrites them on every launch."""
        src = self.path / ".hydra"
        if not src.is_dir():
            return
        shutil.rmtree(self.first_hydra, ignore_errors=True)
        self.first_hydra.mkdir()
        for f in src.glob("*.yaml"):
            shutil.copy2(f, self.first_hydra / f.name)

    def restore_hydra(self) -> None:
        """Put back the .hydra/*.yaml of the launch that produced this dir's results."""
        if self.first_hydra.is_dir():
            for f in self.first_hydra.glob("*.yaml"):
                shutil.copy2(f, self.path / ".hydra" / f.name)

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
