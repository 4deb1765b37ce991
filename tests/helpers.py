"""Shared test helpers: run experiments/run.py in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from experiments.paths import RUN_PY


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run experiments/run.py with `args` in a subprocess; outputs land under `cwd`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
