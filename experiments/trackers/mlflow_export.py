"""Write runs to MLflow: one MLflow experiment per sweep, one MLflow run per run dir (its key)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from experiments.trackers.source import RunRecord, headline, layer_series, metric_series

DEFAULT_URI = "sqlite:///outputs/mlflow.db"
KEY_TAG = "mlp.run_dir"          # the run dir an MLflow run came from: the export's key
FINGERPRINT_TAG = "mlp.fingerprint"
STATUS = {"completed": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
          "refused": "FAILED", "interrupted": "KILLED"}  # anything else stays RUNNING
BATCH = 1000  # MLflow's limit of entities per log_batch (params <= 100 of them)


def local_artifacts(uri: str) -> str | None:
    """Artifact root for a SQLite store: mlflow-artifacts/ beside the database file; None lets
    a server (http://...) or a file store decide."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlflow-artifacts").resolve().as_uri()
    return None


def _key(text: str) -> str:
    """MLflow keys allow alphanumerics, _ - . space : / only."""
    return re.sub(r"[^\w\-. :/]", "_", text)


class MlflowExport:
    """Export RunRecords through an MlflowClient; a run already exported unchanged is skipped."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self._experiments: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {}

    def _experiment(self, name: str) -> tuple[str, dict[str, tuple[str, str]]]:
        """(experiment id, {run dir: (MLflow run id, fingerprint)} of its live runs)."""
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                root = local_artifacts(self.uri)
                exp_id = self.client.create_experiment(
                    name, artifact_location=f"{root}/{_key(name)}" if root else None)
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp_id)
            done: dict[str, tuple[str, str]] = {}
            token = None
            while True:
                page = self.client.search_runs([exp_id], max_results=1000, page_token=token)
                for r in page:
                    key = r.data.tags.get(KEY_TAG)
                    if key:
                        done[key] = (r.info.run_id, r.data.tags.get(FINGERPRINT_TAG, ""))
                token = page.token
                if not token:
                    break
            self._experiments[name] = (exp_id, done)
        return self._experiments[name]

    def export(self, rec: RunRecord) -> str:
        """Log one run; returns what happened: added, updated or unchanged."""
        exp_id, done = self._experiment(rec.experiment)
        old = done.get(str(rec.path))
        if old and old[1] == rec.fingerprint:
            return "unchanged"
        if old:
            self.client.delete_run(old[0])
        tags = {f"mlp.{k}" if k == "run_dir" else k: v for k, v in rec.tags.items() if v}
        tags[FINGERPRINT_TAG] = rec.fingerprint
        if rec.tags.get("notes"):
            tags["mlflow.note.content"] = rec.tags["notes"]  # the run's description in the UI
        for t in filter(None, (s.strip() for s in rec.tags.get("tags", "").split(","))):
            tags[f"tag.{_key(t)}"] = "true"
        run = self.client.create_run(exp_id, start_time=rec.start_ms or None, run_name=rec.name,
                                     tags=tags)
        run_id = run.info.run_id
        self._log(run_id, rec)
        for path in rec.artifacts:
            self.client.log_artifact(run_id, str(path))
        if rec.status in STATUS:
            self.client.set_terminated(run_id, STATUS[rec.status], end_time=rec.end_ms or None)
        done[str(rec.path)] = (run_id, rec.fingerprint)
        return "updated" if old else "added"

    def _log(self, run_id: str, rec: RunRecord) -> None:
        params = [Param(_key(k), v[:6000]) for k, v in rec.params.items()]
        metrics = [Metric(_key(k), v, ms, step) for k, rows in metric_series(rec).items()
                   for step, v, ms in rows]
        times = dict(zip((int(r["epoch"]) for r in rec.metrics), rec.epoch_ms, strict=True))
        metrics += [Metric(_key(k), v, times.get(step, rec.end_ms), step)
                    for k, rows in layer_series(rec).items() for step, v in rows]
        last = rec.metrics[-1]["epoch"] if rec.metrics else 0
        metrics += [Metric(k, v, rec.end_ms, int(last)) for k, v in headline(rec).items()
                    if math.isfinite(v)]
        for i in range(0, len(params), 100):
            self.client.log_batch(run_id, params=params[i:i + 100])
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + BATCH])

    def experiment_url(self, name: str) -> str:
        exp_id, _ = self._experiment(name)
        return f"#/experiments/{exp_id}/runs"


def export_runs(recs: Iterable[RunRecord], uri: str) -> dict[str, int]:
    """Export every record; returns counts of added / updated / unchanged runs."""
    exporter = MlflowExport(uri)
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for rec in recs:
        counts[exporter.export(rec)] += 1
    return counts

