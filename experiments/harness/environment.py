"""What a run ran on: env.json (packages, host, CPU, threads, CUDA) and git.patch when dirty."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from experiments import record
from experiments.harness.rundir import atomic_write_bytes, atomic_write_json
from experiments.paths import REPO


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _name_version(d: metadata.Distribution) -> tuple[str, str]:
    """A distribution's Name and Version fields, read from its metadata file's header only:
    `d.metadata` parses the whole file (long descriptions included) with the email parser,
    ~1 ms a package, a quarter of a second for this environment."""
    name = version = ""
    for line in (d.read_text("METADATA") or d.read_text("PKG-INFO") or "").splitlines():
        if not line.strip():
            break  # the end of the header
        if line.startswith("Name:") and not name:
            name = line[5:].strip()
        elif line.startswith("Version:") and not version:
            version = line[8:].strip()
    return name, version


@functools.cache  # once per process: a launcher worker runs many jobs
def packages() -> tuple[str, ...]:
    """`name==version` of every installed distribution, sorted (what `pip freeze` lists)."""
    seen = {}
    for d in metadata.distributions():
        name, version = _name_version(d)
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={version}"
    return tuple(seen[k] for k in sorted(seen))


def host(threads: int, device: str) -> dict[str, Any]:
    """The machine: name, OS, CPU model and cores, torch threads, the CUDA device if any."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    out: dict[str, Any] = {
        "hostname": socket.gethostname(), "platform": platform.platform(),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
        "torch_threads": threads, "device": device, "python": sys.version.split()[0],
        "executable": sys.executable, "cuda": None,
    }
    if torch.cuda.is_available():
        i = torch.cuda.current_device()
        p = torch.cuda.get_device_properties(i)
        out["cuda"] = {"device": p.name, "index": i, "count": torch.cuda.device_count(),
                       "memory_gb": round(p.total_memory / 2**30, 1),
                       "capability": f"{p.major}.{p.minor}", "torch_cuda": torch.version.cuda}
    return out


@functools.cache  # the code this process imported: read once, at its first run
def git_state() -> tuple[str, str]:
    """(commit, diff of the working tree against it: tracked files, '' when clean)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        patch = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO,
                               capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", ""
    return commit or "unknown", patch


def write(run_dir: Path, threads: int, device: str) -> None:
    """env.json, and git.patch when the tree differs from its commit (W&B's diff.patch)."""
    commit, patch = git_state()
    atomic_write_json(run_dir / record.ENV, {
        "git": {"commit": commit, "dirty": bool(patch.strip()),
                "patch": record.GIT_PATCH if patch.strip() else None},
        "host": host(threads, device), "packages": list(packages()),
        "environment": {k: v for k, v in os.environ.items()
                        if k.startswith(("OMP_", "MKL_", "CUDA_VISIBLE", "SLURM_JOB_ID"))},
    })
    if patch.strip():
        atomic_write_bytes(run_dir / record.GIT_PATCH, patch.encode())
    else:
        (run_dir / record.GIT_PATCH).unlink(missing_ok=True)
