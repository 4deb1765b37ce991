"""Where the project's folders are: the repo root, its Hydra configs and the default outputs.

The one place that locates them; `experiments` is installed in editable mode from the repo,
so the repo is the folder above this package.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
OUTPUTS = REPO / "outputs"
RUN_PY = REPO / "experiments" / "run.py"
COMPARE_PY = REPO / "experiments" / "compare.py"
