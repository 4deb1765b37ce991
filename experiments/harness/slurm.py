"""What a SLURM partition can run, checked before a submitit_slurm sweep submits anything."""

from __future__ import annotations

import shutil
import subprocess

from omegaconf import DictConfig, OmegaConf


def node_cpus(partition: str | None) -> list[int]:
    """CPUs of each node of `partition` (all partitions if None); [] if sinfo cannot tell."""
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return []
    cmd = [sinfo, "-h", "-N", "-o", "%c"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(w) for w in out.split() if w.isdigit()]


def check_cpus(cfg: DictConfig) -> str | None:
    """One line if the sweep's launcher asks for more CPUs per node than its partition's largest
    node has (such a job would pend forever or be refused by sbatch), else None."""
    launcher = OmegaConf.select(cfg, "hydra.launcher", default=None)
    if launcher is None or "Slurm" not in str(launcher.get("_target_", "")):
        return None
    per_task = launcher.get("cpus_per_task")
    if not per_task:
        return None
    partition = launcher.get("partition")
    cpus = node_cpus(str(partition) if partition else None)
    if not cpus:
        return None
    need = int(per_task) * int(launcher.get("tasks_per_node") or 1)
    if need <= max(cpus):
        return None
    where = f"partition {partition}" if partition else "the cluster"
    return (f"hydra.launcher.cpus_per_task={per_task}: the largest node of {where} has "
            f"{max(cpus)} CPUs (sinfo), so SLURM can never run these jobs")
