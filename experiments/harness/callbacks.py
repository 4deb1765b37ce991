"""Hydra callback around a multirun: job count for the jobs, and a tally of outcomes at the end."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.harness.jobs import ENV_LAUNCH, ENV_NJOBS, OUTCOMES
from experiments.harness.preflight import count_jobs


class Tally:
    """Outcomes of one multirun launch, as collected from its jobs."""

    def __init__(self, sweep_dir: Path, outcomes: list[dict[str, Any]], expected: int) -> None:
        self.sweep_dir, self.outcomes, self.expected = sweep_dir, outcomes, expected
        self.status = Counter(str(o.get("status")) for o in outcomes)
        self.actions = Counter(str(o.get("action")) for o in outcomes)

    @property
    def n_failed(self) -> int:
        """Failed or refused runs, plus jobs that never reported (crashed workers)."""
        missing = max(0, self.expected - len(self.outcomes))
        return self.status["failed"] + self.status["refused"] + missing

    def lines(self) -> list[str]:
        n = len(self.outcomes)
        counts = ", ".join(f"{self.status[s]} {s}" for s in
                           ("completed", "diverged", "failed", "refused") if self.status[s])
        head = f"sweep finished: {n} run{'s' * (n != 1)}: {counts or 'none'}"
        notes = [f"{self.actions[a]} {w}" for a, w in
                 (("skip", "skipped (already done)"), ("resume", "resumed")) if self.actions[a]]
        if notes:
            head += f" ({', '.join(notes)})"
        out = [head]
        if self.expected > n:
            out.append(f"  {self.expected - n} job(s) did not report (worker crashed?)")
        for o in sorted(self.outcomes, key=lambda o: int(o.get("num", 0))):
            if o.get("status") in ("failed", "refused"):
                out.append(f"  {o['status']}: {Path(str(o.get('dir'))).name}: {o.get('error')}")
        out.append(f"results: {self.sweep_dir}")
        out.append(f"compare: python experiments/compare.py {self.sweep_dir}")
        return out


LAST_TALLY: Tally | None = None  # read by run.py's cli() to set the exit status


class SweepReport(Callback):
    """on_multirun_start: tell jobs the launch id and job count; on_multirun_end: print a tally."""

    def __init__(self) -> None:
        self.launch = ""
        self.expected = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hc = config.hydra
        target = str(OmegaConf.select(hc, "sweeper._target_", default=""))
        if "Optuna" in target:
            self.expected = int(hc.sweeper.n_trials)
        else:
            params = hc.sweeper.get("params") or {}
            self.expected = count_jobs(list(hc.overrides.task),
                                       {str(k): str(v) for k, v in params.items()})
        self.launch = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.environ[ENV_LAUNCH] = self.launch
        os.environ[ENV_NJOBS] = str(self.expected)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST_TALLY
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        d = sweep_dir / OUTCOMES / self.launch
        outcomes = []
        for f in sorted(d.glob("*.json")) if self.launch else []:
            try:
                outcomes.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
        shutil.rmtree(d, ignore_errors=True)
        with_outcomes = d.parent
        if with_outcomes.is_dir() and not any(with_outcomes.iterdir()):
            with_outcomes.rmdir()
        LAST_TALLY = Tally(sweep_dir, outcomes, self.expected)
        print("\n".join(LAST_TALLY.lines()), flush=True)
        os.environ.pop(ENV_LAUNCH, None)
        os.environ.pop(ENV_NJOBS, None)
