"""What the numbers were measured on: CPU, cores, load, library versions, threads, BLAS kernels."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """1-minute load average (other processes competing for the cores), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """One flat dict describing the machine and the software stack of this benchmark run."""
    import numpy
    import sklearn

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "load_avg_1min": load_average(),
    }
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def describe(info: dict[str, Any]) -> str:
    """One line for the table's caption."""
    s = (f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_blas']}, "
         f"{info['cpu_capability']}) with {info['torch_threads']} threads, numpy {info['numpy']}, "
         f"scikit-learn {info['sklearn']}, Python {info['python']}")
    if info.get("load_avg_1min") is not None:
        s += f"; load average at start {info['load_avg_1min']}"
    return s
