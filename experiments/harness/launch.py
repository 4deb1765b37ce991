"""One multirun launch: its id, sweep dir and job count, carried to every job by the Hydra config.

run.py's cli() creates the launch before Hydra starts, pins `hydra.sweep.dir` and sets
`hydra.callbacks.launch.{id,n_jobs}`, so every job, under any launcher and on any machine
that sees the sweep dir, knows where it belongs without inheriting the launcher's environment.
Each job leaves its outcome in `<sweep dir>/.launch/<id>/<job num>.json`; the tally reads them
after the launcher returns or raises.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import record
from experiments.harness.rundir import atomic_write_json

LAUNCH_DIR = record.LAUNCH  # <sweep dir>/.launch/<launch id>/: launch.json and <job num>.json
CALLBACK = "launch"  # the hydra.callbacks entry whose `id` and `n_jobs` carry the launch
KNOWN_STATUSES = tuple(s for s in record.STATUSES if s != record.RUNNING)  # a job's outcomes


def _quote(value: str) -> str:
    """A Hydra override value: single-quoted, so paths with any characters pass."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Launch:
    """A multirun launch: `id`, `sweep_dir`, `n_jobs`, and the command line that started it."""

    id: str
    sweep_dir: Path
    n_jobs: int
    argv: tuple[str, ...] = ()

    @classmethod
    def new(cls, sweep_dir: str | Path, n_jobs: int, argv: Sequence[str] = ()) -> Launch:
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return cls(stamp, Path(sweep_dir), n_jobs, tuple(argv))

    @property
    def dir(self) -> Path:
        return self.sweep_dir / LAUNCH_DIR / self.id

    def command_line(self) -> list[str]:
        """argv for Hydra: the user's overrides, then this launch's sweep dir, id and job count."""
        user = [a for a in self.argv if not a.lstrip("+~").startswith("hydra.sweep.dir=")]
        return [*user, f"hydra.sweep.dir={_quote(str(self.sweep_dir))}",
                f"hydra.callbacks.{CALLBACK}.id={self.id}",
                f"hydra.callbacks.{CALLBACK}.n_jobs={self.n_jobs}"]

    def resume_command(self) -> str:
        """The command that re-runs this sweep in place: finished runs skip, the rest resume."""
        user = [a for a in self.argv if not a.lstrip("+~").startswith("hydra.sweep.dir=")]
        return shlex.join(["python", "experiments/run.py", *user,
                           f"hydra.sweep.dir={self.sweep_dir}"])

    def record(self, num: int, outcome: dict[str, Any]) -> None:
        """Job side: leave job `num`'s outcome where the tally reads it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.dir / f"{num}.json", {"num": num, **outcome})

    def outcomes(self) -> list[dict[str, Any]]:
        """Every outcome recorded so far, one per job num (a requeued job's latest)."""
        out = []
        for f in sorted(self.dir.glob("[0-9]*.json")):
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):  # a job killed mid-write left nothing readable
                continue
        return out

    def tally(self, launcher_error: str = "") -> Tally:
        return Tally(self, self.outcomes(), launcher_error)

    def forget(self) -> None:
        """Remove this launch's outcome files (the runs' own records stay)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        parent = self.dir.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()

    def run(self, hydra_main: Callable[[], Any]) -> int:
        """Run the sweep through Hydra, print the tally even if the launcher raised, return the
        exit status: 0 when every job completed or diverged, 1 otherwise."""
        error = ""
        try:
            hydra_main()
        except SystemExit as e:  # Hydra reports a launcher's exception, then exits 1
            error = "" if e.code in (0, None) else "the launcher stopped with an error (above)"
        except KeyboardInterrupt:
            error = "interrupted (Ctrl-C)"
        except Exception as e:  # HYDRA_FULL_ERROR=1 lets the exception through
            error = f"the launcher raised {type(e).__name__}: {e}".splitlines()[0]
        tally = self.tally(error)
        print("\n".join(tally.lines()), flush=True)
        self.forget()
        return 0 if tally.all_done else 1


class Tally:
    """The outcomes of one launch as its jobs recorded them, and what is missing."""

    def __init__(self, launch: Launch, outcomes: list[dict[str, Any]], launcher_error: str = ""
                 ) -> None:
        self.launch, self.outcomes, self.launcher_error = launch, outcomes, launcher_error
        self.status: dict[str, int] = {}
        for o in outcomes:
            s = str(o.get("status"))
            self.status[s] = self.status.get(s, 0) + 1
        self.actions = [str(o.get("action")) for o in outcomes]

    @property
    def missing(self) -> int:
        """Jobs that never reported (a worker killed, a launcher that stopped early)."""
        return max(0, self.launch.n_jobs - len(self.outcomes))

    @property
    def all_done(self) -> bool:
        done = sum(self.status.get(s, 0) for s in record.FINISHED)
        return not self.launcher_error and not self.missing and done == len(self.outcomes)

    def _continues(self) -> str:
        """`  # continues run 2 from epoch 5, ...`: where the resume picks each stopped run up."""
        parts = [f"run {int(o.get('num', 0)) + 1} from epoch {o['epochs_completed']}"
                 for o in sorted(self.outcomes, key=lambda o: int(o.get("num", 0)))
                 if o.get("status") == record.INTERRUPTED and o.get("epochs_completed") is not None]
        return f"  # continues {', '.join(parts)}" if parts else ""

    def lines(self) -> list[str]:
        n = len(self.outcomes)
        order = [*KNOWN_STATUSES, *sorted(set(self.status) - set(KNOWN_STATUSES))]
        counts = ", ".join(f"{self.status[s]} {s}" for s in order if self.status.get(s))
        stopped = self.status.get(record.INTERRUPTED) or self.status.get(record.NOT_STARTED)
        head = f"sweep {'stopped' if stopped else 'finished'}: {n} run{'s' * (n != 1)}: " \
            f"{counts or 'none'}"
        notes = [f"{self.actions.count(a)} {w}" for a, w in
                 (("skip", "skipped (already done)"), ("resume", "resumed")) if a in self.actions]
        out = [head + (f" ({', '.join(notes)})" if notes else "")]
        if self.missing:
            out.append(f"  {self.missing} of {self.launch.n_jobs} job(s) did not report "
                       "(worker killed or launcher stopped)")
        if self.launcher_error:
            out.append(f"  {self.launcher_error}")
        for o in sorted(self.outcomes, key=lambda o: int(o.get("num", 0))):
            if o.get("status") not in (*record.FINISHED, record.NOT_STARTED):  # counted above
                out.append(f"  {o.get('status')}: {Path(str(o.get('dir'))).name}: {o.get('error')}")
        sweep = self.launch.sweep_dir.resolve()
        out.append(f"results: {sweep}")
        if not self.all_done:
            out.append(f"resume: {self.launch.resume_command()}{self._continues()}")
        out.append(f"compare: python experiments/compare.py {sweep}")
        return out
