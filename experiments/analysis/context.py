"""What a comparison is about: the settings held fixed, what varied, code version, commands, dates."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from experiments.analysis.load import META_COLUMNS, SUMMARY, SWEEP_MARK
from experiments.analysis.style import fmt
from experiments.record import LABELS, OVERRIDES

FIRST = ("data.name", "optim.name", "optim.lr", "epochs", "batch_size", "depth", "width",
         "activation", "init", "batchnorm", "dropout")  # shown first among the fixed settings


@dataclass
class Context:
    """The facts at the top of summary.md and report.html."""

    fixed: dict[str, str] = field(default_factory=dict)     # key -> the one value of every run
    varied: dict[str, list[str]] = field(default_factory=dict)  # key -> its levels
    commits: list[str] = field(default_factory=list)        # git commits (+dirty) of the runs
    commands: list[str] = field(default_factory=list)       # the commands that made the runs
    dates: str = ""                                         # first - last run record written
    statuses: dict[str, int] = field(default_factory=dict)  # status -> runs
    never_started: dict[str, int] = field(default_factory=dict)  # sweep dir -> jobs with no dir


def _commands(run_dirs: list[Path]) -> list[str]:
    """`python experiments/run.py -m ...` per sweep (its multirun.yaml), else per run."""
    out: dict[str, None] = {}
    seen: set[Path] = set()
    for d in run_dirs:
        sweep = next((p for p in d.parents if (p / SWEEP_MARK).exists()), None)
        src = sweep / SWEEP_MARK if sweep else d / OVERRIDES
        if src in seen:
            continue
        seen.add(src)
        try:
            doc = yaml.safe_load(src.read_text())
        except (OSError, yaml.YAMLError):
            continue
        task = doc.get("hydra", {}).get("overrides", {}).get("task", []) if sweep else doc
        if isinstance(task, list):
            out["python experiments/run.py" + (" -m" if sweep else "") +
                "".join(f" {t}" for t in task)] = None
        if len(out) >= 10:
            break
    return list(out)


def never_started(run_dirs: list[Path]) -> dict[str, int]:
    """Per sweep: the jobs its launch planned (multirun.yaml, hydra.callbacks.launch.n_jobs)
    that left no run dir, e.g. when the sweep was interrupted."""
    found: dict[Path, int] = {}
    for d in run_dirs:
        sweep = next((p for p in d.parents if (p / SWEEP_MARK).exists()), None)
        if sweep is not None:
            found[sweep] = found.get(sweep, 0) + 1
    out = {}
    for sweep, n in found.items():
        try:
            doc = yaml.safe_load((sweep / SWEEP_MARK).read_text())
            planned = int(doc["hydra"]["callbacks"]["launch"]["n_jobs"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
            continue
        if planned > n:
            out[str(sweep)] = planned - n
    return out


def context(runs: pd.DataFrame, varying: list[str], all_dirs: list[str] | None = None
            ) -> Context:
    """Read the fixed settings from the run table and the rest from each run's record;
    all_dirs (every run found, before --filter) are checked against what each sweep planned."""
    keys = [c for c in runs.columns if c not in META_COLUMNS and c != "sweep"
            and c.split(".")[0] not in LABELS]  # labels have their own line
    fixed = {k: fmt(runs[k].iloc[0]) for k in keys if k not in varying
             and runs[k].nunique(dropna=False) == 1}
    fixed = {k: fixed[k] for k in [*(k for k in FIRST if k in fixed),
                                   *(k for k in fixed if k not in FIRST)]}
    varied = {k: [fmt(v) for v in pd.unique(runs[k])] for k in varying}
    commits: dict[str, None] = {}
    stamps = []
    dirs = [Path(d) for d in runs["run_dir"]]
    for d in dirs:
        try:
            s = json.loads((d / SUMMARY).read_text())
            stamps.append((d / SUMMARY).stat().st_mtime)
        except (OSError, ValueError):
            continue
        git = (s.get("versions") or {}).get("git") if isinstance(s, dict) else None
        if git:
            commits[str(git)] = None
    dates = ""
    if stamps:
        first, last = (time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
                       for t in (min(stamps), max(stamps)))
        dates = first if first == last else f"{first} – {last}"
    return Context(fixed=fixed, varied=varied, commits=list(commits), commands=_commands(dirs),
                   dates=dates, statuses=runs["status"].value_counts().to_dict(),
                   never_started=never_started([Path(d) for d in all_dirs or []]))
