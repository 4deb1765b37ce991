"""Shared test helpers: run experiments/run.py in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from experiments.paths import CONF_DIR, RUN_PY


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run experiments/run.py with `args` in a subprocess; outputs land under `cwd`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def hydra_composed(overrides: list[str]) -> Any:
    """Hydra's own composition of the run config for `overrides` (the composition cache
    uninstalled), hydra node included."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    import experiments.harness.schema  # noqa: F401 (registers the structured configs)
    from experiments.harness import compose_cache

    compose_cache.uninstall()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        return GlobalHydra.instance().config_loader().load_configuration(
            "config", overrides, RunMode.RUN)
