"""A clean stop: SIGINT (Ctrl-C) or SIGTERM (SLURM preemption) asks runs to stop after an epoch.

The one home of the harness's signal handling, used by the launching process and by every job
process (joblib workers, submitit/SLURM jobs):

- `install()` catches SIGINT and SIGTERM in this process. The first signal only records a stop
  request (and touches the launch's stop file, so jobs in other processes see it too); a second
  one raises KeyboardInterrupt to stop at once.
- A training loop calls `requested()` after each epoch's writes and ends the run as
  `interrupted` when it returns a signal name; a job that has not started returns at once.
- `exit_status()` is the shell's convention for a stop by that signal (130 SIGINT, 143 SIGTERM).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_FILE = "STOP"  # <sweep dir>/.launch/<launch id>/STOP: a stop asked in another process

_received: list[int] = []
_stop_file: list[Path] = []
_installed: dict[int, object] = {}  # signal -> the handler it replaced
_no_escalation: list[bool] = []  # set in submitit jobs: a second signal is not "stop at once",
# and a signal the job receives stops this job only (SLURM signals one job: scancel, its time
# limit, its preemption); a stop file written by the launching process still stops it.


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _handler(signum: int, frame: FrameType | None) -> None:
    if _received and not _no_escalation:  # a second signal: stop now
        raise KeyboardInterrupt
    _received.append(signum)
    _touch()
    print(f"\n{_name(signum)}: stopping after the current epoch's writes "
          "(send it again to stop at once)", file=sys.stderr, flush=True)


def _touch() -> None:
    if _no_escalation:  # a submitit job: its own signal is not the launch's
        return
    for f in _stop_file:
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(_name(_received[0]) + "\n")
        except OSError:  # the request still stands in this process
            pass


def install(stop_file: Path | None = None) -> bool:
    """Catch SIGINT and SIGTERM in this process (idempotent); False off the main thread."""
    if stop_file is not None:
        set_stop_file(stop_file)
    if threading.current_thread() is not threading.main_thread():
        return False
    for s in STOP_SIGNALS:
        if s not in _installed:
            _installed[s] = signal.signal(s, _handler)
    return True


def set_stop_file(path: Path | None) -> None:
    """Share stop requests through `path` (a launch's stop file); None: this process only."""
    _stop_file[:] = [Path(path)] if path is not None else []
    if _received:
        _touch()


def uninstall() -> None:
    """Put back the handlers `install()` replaced and forget any request (tests, reuse)."""
    for s, old in list(_installed.items()):
        signal.signal(s, old)  # type: ignore[arg-type]
        del _installed[s]
    _no_escalation.clear()
    reset()


def reset() -> None:
    """Forget the stop request of this process (the handlers stay)."""
    _received.clear()


def requested() -> str | None:
    """The name of the signal that asked for a stop (here or in the launch), else None."""
    if _received:
        return _name(_received[0])
    for f in _stop_file:
        try:
            return f.read_text().strip() or "SIGTERM"
        except OSError:
            continue
    return None


def exit_status(name: str | None = None) -> int:
    """128 + the signal number: what a shell reports for a process stopped by it."""
    name = name or requested()
    return 128 + int(signal.Signals[name]) if name else 0


# ---------------------------------------------------------------- SLURM jobs (submitit)
# submitit asks SLURM for SIGUSR2 `signal_delay_s` before the time limit (and on preemption);
# its own handler requeues the job (`hydra.launcher.max_num_timeout`) or gives up, at once,
# from wherever the training loop is. Caught here, USR2 is a stop request like SIGTERM: the
# run ends `interrupted` after the epoch's writes, and only then does `pass_on()` hand the
# signal to submitit, whose requeue restarts the job and the run resumes from its checkpoint.
WARNING_SIGNAL = signal.SIGUSR2


def install_in_submitit_job() -> bool:
    """A submitit job (SLURM or local): SIGINT, SIGTERM (scancel, time limit, preemption) and,
    where submitit owns it, USR2 ask for a stop after the epoch's writes, of this job only (the
    launch's stop file is read, never written, here). A repeated signal does not escalate: srun
    forwards SLURM's SIGTERM a second time, and SLURM's SIGKILL follows after KillWait anyway."""
    if not install():
        return False
    _no_escalation[:] = [True]
    old = signal.getsignal(WARNING_SIGNAL)
    if WARNING_SIGNAL not in _installed and callable(old):
        _installed[WARNING_SIGNAL] = signal.signal(WARNING_SIGNAL, _handler)
    return True


def pass_on() -> None:
    """After a run stopped by USR2 is recorded: put the replaced handlers back and give USR2 to
    submitit's (it requeues the job and exits, or raises when it will not requeue)."""
    if requested() != WARNING_SIGNAL.name:
        return
    theirs = _installed.get(WARNING_SIGNAL)
    uninstall()  # SLURM's own SIGTERM after a requeue goes to submitit again, not to us
    if callable(theirs):
        theirs(WARNING_SIGNAL, None)
