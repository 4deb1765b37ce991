"""What the numbers were measured on: CPU, cores, load, library versions, threads, BLAS kernels."""

from __future__ import annotations

import os
import platform
import resource
import time
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


def _busy_cpu_s() -> float | None:
    """CPU seconds all cores have spent busy since boot (/proc/stat), None where unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds used by this process and the children it has waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Contention:
    """Measures how much of the machine other processes used while a section ran.

    `other_share` is (busy CPU time of all cores - our own) / (wall time x cores): 0 on a
    quiet machine, 0.5 when something else kept one of two cores busy throughout.
    """

    def __enter__(self) -> Contention:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_cpu_s(), _own_cpu_s()
        self.other_share: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        busy1 = _busy_cpu_s()
        if self.busy0 is None or busy1 is None:
            return
        wall = time.perf_counter() - self.t0
        other = (busy1 - self.busy0) - (_own_cpu_s() - self.own0)
        self.other_share = max(0.0, other) / max(wall * (os.cpu_count() or 1), 1e-9)


def wait_quiet(max_s: float, threshold: float = 0.05, window_s: float = 2.0) -> float | None:
    """Wait (at most max_s) until other processes use < threshold of the cores over a window.

    Returns the last window's busy share (None where /proc/stat is missing)."""
    deadline = time.monotonic() + max_s
    while True:
        b0 = _busy_cpu_s()
        if b0 is None:
            return None
        time.sleep(window_s)
        share = (_busy_cpu_s() - b0) / (window_s * (os.cpu_count() or 1))
        if share < threshold or time.monotonic() >= deadline:
            return share
