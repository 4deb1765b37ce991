"""Write runs as TensorBoard event files: scalars per epoch and HParams, one folder per run dir."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from experiments.trackers.source import RunRecord, headline, layer_series, metric_series

DEFAULT_LOGDIR = "outputs/tensorboard"  # relative to the working dir, like outputs/sweeps
MARK = "mlp_export.json"  # in each run's event folder: which run dir, which fingerprint


def hparam(v: Any) -> int | float | str | bool:
    """HParams take numbers, strings and booleans; None and lists become text."""
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    return str(v)


def _folder(logdir: Path, rec: RunRecord) -> Path:
    """<logdir>/<sweep>/<run>; another run dir already there gets a suffixed folder."""
    base = logdir / rec.experiment / rec.name
    for i in range(100):
        d = base if i == 0 else base.with_name(f"{base.name}~{i}")
        mark = _read_mark(d)
        if mark is None or mark.get("run_dir") == str(rec.path):
            return d
    raise RuntimeError(f"too many event folders named {base}")


def _read_mark(d: Path) -> dict[str, Any] | None:
    try:
        return json.loads((d / MARK).read_text())
    except (OSError, ValueError):
        return None


def export_run(rec: RunRecord, logdir: Path, domains: dict[str, list[Any]]) -> str:
    """Write one run's event files (rewritten when its record changed): added/updated/unchanged."""
    d = _folder(logdir, rec)
    mark = _read_mark(d)
    if mark is not None and mark.get("fingerprint") == rec.fingerprint:
        return "unchanged"
    if d.exists():
        shutil.rmtree(d)  # events append: re-logging into the folder would duplicate them
    d.mkdir(parents=True)
    with SummaryWriter(log_dir=str(d)) as w:
        for key, rows in metric_series(rec).items():
            for step, v, ms in rows:
                w.add_scalar(f"metrics/{key}", v, step, walltime=ms / 1000)
        for key, rows in layer_series(rec).items():
            for step, v in rows:
                w.add_scalar(key, v, step)
        for key in ("notes", "tags", "status", "git", "run_dir"):
            if rec.tags.get(key):
                w.add_text(key, rec.tags[key])
        hp = {k: hparam(v) for k, v in rec.config.items()}
        hp["status"] = rec.status
        metrics = {f"hparam/{k}": v for k, v in headline(rec).items()}
        w.add_hparams(hp, metrics, hparam_domain_discrete={k: v for k, v in domains.items()
                                                           if k in hp}, run_name=".")
    (d / MARK).write_text(json.dumps({"run_dir": str(rec.path), "fingerprint": rec.fingerprint})
                          + "\n")
    return "updated" if mark is not None else "added"


def discrete_domains(recs: list[RunRecord]) -> dict[str, list[Any]]:
    """Every value each text/bool hyperparameter takes in the exported runs (HParams filters)."""
    out: dict[str, set[Any]] = {}
    for rec in recs:
        for k, v in [*rec.config.items(), ("status", rec.status)]:
            out.setdefault(k, set()).add(hparam(v))
    return {k: sorted(v, key=str) for k, v in out.items()  # one type per key, or none given
            if all(type(x) is str for x in v) or all(type(x) is bool for x in v)}


def export_runs(recs: Iterable[RunRecord], logdir: Path) -> dict[str, int]:
    """Export every record under `logdir`; returns counts of added / updated / unchanged runs."""
    recs = list(recs)
    domains = discrete_domains(recs)
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for rec in recs:
        counts[export_run(rec, logdir, domains)] += 1
    return counts

