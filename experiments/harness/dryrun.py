"""`dry_run=true`: what a command line would do, job by job, without creating anything."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.harness.build import plain
from experiments.harness.preflight import Plan
from experiments.harness.rundir import RunDir


def run_dir(cfg: DictConfig, num: int, multirun: bool) -> Path:
    """Where job `num` of this composed config (hydra node included) writes."""
    job = cfg.copy()
    with open_dict(job):
        job.hydra.job.num = num
    if not multirun:
        return Path(str(OmegaConf.select(job, "hydra.run.dir")))
    return Path(str(job.hydra.sweep.dir)) / str(job.hydra.sweep.subdir)


def checkpoint_epoch(rd: RunDir) -> int | None:
    """The last epoch the checkpoint holds: where a resume continues from."""
    try:
        return int(torch.load(rd.checkpoint, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # unreadable: the run would start afresh or fail, not resume
        return None


def action(cfg: DictConfig, path: Path) -> str:
    """run | resume from epoch N | skip (completed) | refuse: <why>, as a launch would decide."""
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    rd = RunDir(path)
    if not path.exists():
        return "run"
    d = rd.decide(plain(task), tidy=False)
    if d.action == "fresh":
        return "run" + (f" ({d.reason})" if d.reason else "")
    if d.action == "resume":
        epoch = checkpoint_epoch(rd)
        epochs = int(task.epochs)
        return f"resume from epoch {epoch} of {epochs}" if epoch is not None else "resume"
    if d.action == "skip":
        return f"skip ({d.reason})"
    return f"refuse: {d.reason}"


def lines(p: Plan) -> list[str]:
    """The dry run's report: one line per job, then the totals; touches no file."""
    first = p.configs[0]
    sweeper = str(OmegaConf.select(first, "hydra.sweeper._target_", default=""))
    if p.multirun and "Optuna" in sweeper:
        params = OmegaConf.select(first, "hydra.sweeper.params", default={}) or {}
        return [f"dry run: an Optuna search of {p.n_jobs} trials in {p.sweep_dir} "
                "(nothing created); each trial's values are drawn while it runs, from:",
                *(f"  {k}: {v}" for k, v in params.items())]
    where = p.sweep_dir if p.multirun else "outputs"
    out = [f"dry run: {len(p.configs)} job{'s' * (len(p.configs) != 1)}"
           + (f" in {where}" if p.multirun else "") + " (nothing created)"]
    counts: dict[str, int] = {}
    rows = []
    for num, cfg in enumerate(p.configs):
        path = run_dir(cfg, num, p.multirun)
        what = action(cfg, path)
        word = what.split(" ", 1)[0].rstrip(":")
        counts[word] = counts.get(word, 0) + 1
        overrides = " ".join(str(o) for o in cfg.hydra.overrides.task
                             if not str(o).startswith("hydra."))
        shown = path.name if p.multirun else str(path)
        rows.append((str(num), what, shown, overrides or "(defaults)"))
    wide = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        out.append(f"  {r[0]:>{wide[0]}}  {r[1]:<{wide[1]}}  {r[2]:<{wide[2]}}  {r[3]}")
    out.append("would " + ", ".join(f"{k} {v}" for k, v in counts.items())
               + "; drop dry_run=true to start")
    return out
