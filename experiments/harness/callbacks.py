"""Hydra callback `hydra.callbacks.launch`: its config carries the launch id and job count to
every job; in the launching process it writes the launch's record before any job starts."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.harness.launch import Launch
from experiments.harness.rundir import atomic_write_json


class LaunchRecord(Callback):
    """`id` and `n_jobs` are set by run.py's cli() as overrides (harness.launch.Launch);
    empty when Hydra is driven some other way, and then jobs record no outcome."""

    def __init__(self, id: str = "", n_jobs: int = 0) -> None:  # noqa: A002 (the config key)
        self.id, self.n_jobs = str(id or ""), int(n_jobs or 0)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.id:
            return
        launch = Launch(self.id, Path(str(config.hydra.sweep.dir)), self.n_jobs)
        launch.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(launch.dir / "launch.json", {
            "id": self.id, "n_jobs": self.n_jobs, "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "launcher": str(OmegaConf.select(config, "hydra.launcher._target_", default="")),
            "overrides": list(config.hydra.overrides.task)})
