"""`+logger=mlflow` / `+logger=tensorboard`: each epoch goes to the tracker as it is written.

A Hydra callback (conf/logger/*.yaml puts it in hydra.callbacks): on_job_start registers an epoch
hook (experiments.harness.hooks) in the job's process; the hook logs the epoch's metrics row
(step = epoch) to a live tracker run; on_job_end replaces that run with the full export of the
finished run dir (params, per-layer metrics, tags, artifacts: experiments/export.py's record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.harness import hooks
from experiments.trackers.source import find_run_dirs, read_run


class LiveLogger(Callback):
    """`to`: mlflow | tensorboard; `uri` (MLflow) or `logdir` (TensorBoard)."""

    def __init__(self, to: str, uri: str = "sqlite:///outputs/mlflow.db",
                 logdir: str = "outputs/tensorboard") -> None:
        if to not in ("mlflow", "tensorboard"):
            raise ValueError(f"invalid config: logger to={to} (allowed: mlflow, tensorboard)")
        self.to, self.uri, self.logdir = to, uri, Path(logdir)
        self._live: dict[str, Any] = {}

    def _hook(self, run_dir: Path, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        values = {k: float(v) for k, v in row.items()
                  if k != "epoch" and isinstance(v, int | float)}
        if self.to == "mlflow":
            from mlflow.entities import Metric

            from experiments.trackers.mlflow_export import MlflowExport
            if "run_id" not in self._live:
                exp = MlflowExport(self.uri)
                rec = read_run(run_dir)
                exp_id, _ = exp._experiment(rec.experiment)
                run = exp.client.create_run(exp_id, run_name=rec.name,
                                            tags={"mlp.run_dir": str(rec.path), "status": "running",
                                                  "mlp.live": "true"})
                self._live.update(client=exp.client, run_id=run.info.run_id)
            import time
            ms = int(time.time() * 1000)
            self._live["client"].log_batch(self._live["run_id"], metrics=[
                Metric(k, v, ms, step) for k, v in values.items()])
        else:
            if "writer" not in self._live:
                from torch.utils.tensorboard import SummaryWriter
                rec = read_run(run_dir)
                self._live["writer"] = SummaryWriter(
                    log_dir=str(self.logdir / rec.experiment / rec.name))
            for k, v in values.items():
                self._live["writer"].add_scalar(f"metrics/{k}", v, step)
            self._live["writer"].flush()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._live = {}
        hooks.EPOCH_HOOKS.append(self._hook)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if self._hook in hooks.EPOCH_HOOKS:
            hooks.EPOCH_HOOKS.remove(self._hook)
        if "writer" in self._live:
            self._live["writer"].close()
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        dirs = find_run_dirs([run_dir]) if run_dir.is_dir() else []
        if not dirs:
            return
        recs = [read_run(d) for d in dirs]
        if self.to == "mlflow":
            from experiments.trackers import mlflow_export
            exporter = mlflow_export.MlflowExport(self.uri)
            if "run_id" in self._live:  # the live run gives way to the full record
                exporter.client.delete_run(self._live["run_id"])
            for rec in recs:
                exporter.export(rec)
        else:
            from experiments.trackers import tensorboard_export
            tensorboard_export.export_runs(recs, self.logdir)
