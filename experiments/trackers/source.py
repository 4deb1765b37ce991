"""Read run dirs (the harness's run record) into what a tracker logs: params, tags, curves, files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments import record

REPORT = Path("compare") / "report.html"  # compare.py's report, beside the sweep's runs
SWEEP_MARK = "multirun.yaml"  # Hydra writes it at the top of a sweep dir


@dataclass
class RunRecord:
    """One run dir as a tracker sees it."""

    path: Path                   # the run dir, resolved: the export's key
    name: str                    # its folder name, e.g. 3_activation=relu,depth=8
    experiment: str              # the sweep folder's name, or "runs" for single runs
    status: str
    config: dict[str, Any]       # the config, flattened: optim.lr -> 0.05
    tags: dict[str, str]         # status, git, sweep, notes, tags
    metrics: list[dict[str, float]]  # metrics.csv rows (epoch included)
    layers: list[dict[str, Any]]     # layers.csv rows
    summary: dict[str, Any]
    artifacts: list[Path] = field(default_factory=list)
    start_ms: int = 0
    end_ms: int = 0
    fingerprint: str = ""        # changes when the run's record changes (re-export then)

    @property
    def params(self) -> dict[str, str]:
        """The flattened config as text (what MLflow stores)."""
        return {k: _text(v) for k, v in self.config.items()}

    @property
    def epoch_ms(self) -> list[int]:
        """A wall-clock time per metrics row: the start plus the epoch times so far."""
        out, t = [], float(self.start_ms)
        for row in self.metrics:
            dt = row.get("epoch_time_s", 0.0)
            t += 1000.0 * dt if isinstance(dt, float) and math.isfinite(dt) else 0.0
            out.append(int(t))
        return out


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run dirs under `paths`: folders holding a summary.json or a metrics.csv, sorted."""
    found: set[Path] = set()
    for p in paths:
        if (p / record.SUMMARY).is_file() or (p / record.METRICS).is_file():
            found.add(p.resolve())
            continue
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "compare")
            if record.SUMMARY in filenames or record.METRICS in filenames:
                found.add(Path(dirpath).resolve())
    return sorted(found, key=lambda d: (str(d.parent), _num_prefix(d.name), d.name))


def _num_prefix(name: str) -> int:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else -1


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _number(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows as numbers; a resumed run may repeat an epoch: the last row written wins."""
    try:
        with path.open(newline="") as f:
            rows = [{k: _number(v) for k, v in r.items() if k is not None and v not in (None, "")}
                    for r in csv.DictReader(f)]
    except OSError:
        return []
    key = ("epoch", "layer") if rows and "layer" in rows[0] else ("epoch",)
    last = {tuple(r.get(k) for k in key): r for r in rows if isinstance(r.get("epoch"), int)}
    return sorted(last.values(), key=lambda r: tuple(r.get(k) for k in key))


def _read_config(d: Path) -> dict[str, Any]:
    for path in (d / record.CONFIG, d / ".hydra" / "config.yaml"):
        try:
            cfg = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(cfg, dict):
            return cfg
    return {}


def _text(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    return "" if v is None else str(v)


def read_run(d: Path) -> RunRecord:
    """Everything a tracker needs from one run dir (a missing file leaves its part empty)."""
    d = d.resolve()
    try:
        summary_bytes = (d / record.SUMMARY).read_bytes()
        summary = json.loads(summary_bytes)
    except (OSError, ValueError):
        summary_bytes, summary = b"", {}
    cfg = _read_config(d)
    notes, user_tags = cfg.pop("notes", None), cfg.pop("tags", None)
    notes = summary.get("notes", notes)
    user_tags = summary.get("tags", user_tags)
    metrics = _read_csv(d / record.METRICS)
    status = str(summary.get("status") or ("running" if metrics else "unknown"))
    sweep = d.parent if (d.parent / SWEEP_MARK).exists() else None
    versions = summary.get("versions") or {}
    tags = {"status": status, "run_dir": str(d), "sweep": sweep.name if sweep else "",
            "git": str(versions.get("git", "")), "task": str(summary.get("task") or ""),
            "notes": _text(notes), "tags": _text(user_tags)}
    artifacts = [p for p in (d / record.SUMMARY, d / record.CONFIG, d / record.OVERRIDES, d / record.LOG,
                             d / record.ENV, d / record.GIT_PATCH)
                 if p.is_file()]
    if sweep is not None and (sweep / REPORT).is_file():
        artifacts.append(sweep / REPORT)
    stamps = [p.stat().st_mtime for p in (d / record.METRICS, d / record.SUMMARY) if p.exists()]
    end = max(stamps) if stamps else 0.0
    wall = summary.get("wall_time_s")
    start = end - float(wall) if isinstance(wall, int | float) else end
    h = hashlib.sha1(summary_bytes)
    for p in (d / record.METRICS, d / record.LAYERS):
        h.update(str(p.stat().st_size if p.exists() else -1).encode())
    return RunRecord(
        path=d, name=d.name, experiment=sweep.name if sweep else d.parent.name,
        status=status, config=flatten(cfg), tags=tags, metrics=metrics,
        layers=_read_csv(d / record.LAYERS), summary=summary, artifacts=artifacts,
        start_ms=int(start * 1000), end_ms=int(end * 1000), fingerprint=h.hexdigest())


def headline(rec: RunRecord) -> dict[str, float]:
    """The few numbers a runs table ranks by: best and final primary metric, final val_loss."""
    out: dict[str, float] = {}
    task = rec.summary.get("task") or ""
    primary = record.PRIMARY.get(task) or ("val_acc" if any("val_acc" in r for r in rec.metrics)
                                           else "val_mse")
    best = (rec.summary.get("best") or {}).get(f"best_{primary}")
    final = rec.metrics[-1] if rec.metrics else {}
    for key, value in ((f"best_{primary}", best), (f"final_{primary}", final.get(primary)),
                       ("final_val_loss", final.get("val_loss"))):
        out[key] = float(value) if isinstance(value, int | float) else math.nan
    return out


def layer_series(rec: RunRecord) -> dict[str, list[tuple[int, float]]]:
    """layers/<layer>_<name>/<stat> -> [(epoch, value)] from layers.csv."""
    out: dict[str, list[tuple[int, float]]] = {}
    for r in rec.layers:
        who = f"layers/{r.get('layer')}_{r.get('name')}"
        for k, v in r.items():
            if k in ("epoch", "layer", "name") or not isinstance(v, int | float):
                continue
            out.setdefault(f"{who}/{k}", []).append((int(r["epoch"]), float(v)))
    return out


def metric_series(rec: RunRecord) -> dict[str, list[tuple[int, float, int]]]:
    """<metrics.csv column> -> [(epoch, value, time_ms)]."""
    out: dict[str, list[tuple[int, float, int]]] = {}
    for row, ms in zip(rec.metrics, rec.epoch_ms, strict=True):
        for k, v in row.items():
            if k != "epoch" and isinstance(v, int | float):
                out.setdefault(k, []).append((int(row["epoch"]), float(v), ms))
    return out
