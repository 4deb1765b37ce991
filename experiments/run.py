"""Hydra entry point: config -> data, model, optimizer -> train -> one run directory on disk.

    python experiments/run.py                                   # one run: outputs/runs/<time>/
    python experiments/run.py -m activation=relu,sigmoid        # a sweep: outputs/sweeps/<time>/
"""

from __future__ import annotations

# ruff: noqa: E402 (the collector is paused before the imports below)
import gc

_GC_ON = gc.isenabled()
gc.disable()  # while torch, Hydra and the harness import: see the freeze after the imports
import logging
import math
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.harness import (
    compose_cache,
    configcopy,
    dryrun,
    environment,
    latest,
    launchwords,
    signals,
    sweeper,
    yamldump,
)
from experiments.harness import help as _help  # noqa: F401 (registers the --help resolver)
from experiments.harness.build import GRADCHECK_DIRECTIONS, build, gradcheck_probe, plain
from experiments.harness.jobs import JobInfo, job_info, record_outcome, resolve_threads
from experiments.harness.launch import Launch
from experiments.harness.logging_utils import epoch_line, log_to_file, progress
from experiments.harness.preflight import PreflightError, plan
from experiments.harness.recorder import Recorder
from experiments.harness.rundir import RunDir, RunDirBusy, atomic_write_json, results_key
from experiments.harness.summary import objective
from experiments.harness.validate import CONF_DIR, ConfigError, validate
from experiments.record import BAD, BUSY, INTERRUPTED, NOT_STARTED, RUNNING
from mlp_core.gradcheck import gradcheck_directions
from mlp_core.train import Trainer

# The imports above make ~280k objects that live as long as the process. A collector running
# during them walks that growing heap again and again (~0.25 s of a 2 s start-up here); frozen
# (gc.freeze: moved to a generation no collection visits), they cost later collections nothing.
# The few cyclic leftovers of the imports stay in memory (a few MB).
gc.freeze()
if _GC_ON:  # an importer that had switched it off keeps it off
    gc.enable()
compose_cache.install()  # jobs of a sweep: one composed base plus their values (~10x faster)
configcopy.install()  # Hydra's copies of each job's config: by pickle (~4x faster)
yamldump.install()  # the YAML files of each job's .hydra/: by libyaml (~3x faster)
log = logging.getLogger("harness.run")
file_only = logging.getLogger("harness.file")  # tracebacks: run.log only, not the console
file_only.propagate = False


class GradcheckFailed(RuntimeError):
    """The backward disagrees with finite differences beyond gradcheck_tol."""


class TrialFailed(RuntimeError):
    """Raised to the Optuna sweeper only, after the run is recorded: it marks the trial FAIL
    (optuna 2.10 rejects a nan objective, and the sweeper then crashes on its own retry)."""


def train(cfg: DictConfig, run_dir: str | Path | None = None, job: JobInfo | None = None
          ) -> dict[str, Any]:
    """Train one run described by `cfg` into `run_dir` (Hydra's output dir by default).

    Never raises for a run that goes wrong: the returned summary (also in summary.json)
    says completed, diverged, failed or refused, with the error.
    """
    job = job or job_info()
    rd = RunDir(Path(run_dir) if run_dir else Path(HydraConfig.get().runtime.output_dir))
    if job.launch and job.sweep_dir:  # a launcher's worker process: stop on its signals too
        signals.install(Launch(job.launch, job.sweep_dir, 0).dir / signals.STOP_FILE)
    stop = signals.requested()
    if stop:
        return _not_started(rd, job, stop)
    try:
        return _train(cfg, rd, job)
    except Exception as e:  # bookkeeping itself failed (disk full, permissions): still data
        error = f"{type(e).__name__}: {e}"
        log.error("%s: failed: %s", rd.path, error)
        summary = {"status": "failed", "error": error}
        try:
            atomic_write_json(rd.summary, {**(rd.read_json(rd.summary) or {}), **summary},
                              in_place_if_full=True)
        except Exception:  # nothing more can be recorded there
            pass
        return _finish(job, rd, summary, "error")


def _train(cfg: DictConfig, rd: RunDir, job: JobInfo) -> dict[str, Any]:
    rd.path.mkdir(parents=True, exist_ok=True)
    where = f"[{job.label}] " if job.label else ""
    try:
        validate(cfg)
    except ConfigError as e:  # run.py's cli() catches these first; other callers land here
        if rd.is_fresh_hydra_dir():
            shutil.rmtree(rd.path)
        log.error("%s%s", where, e)
        return _finish(job, rd, {"status": "failed", "error": str(e)}, "invalid")
    try:
        lock = rd.lock()  # one owner per run dir; held until this run's files are written
    except RunDirBusy as e:
        log.warning("%s%s: skipped", where, e)
        return _finish(job, rd, {"status": BUSY, "error": str(e)}, "busy")
    with lock:
        return _owned(cfg, rd, job, where)


def _owned(cfg: DictConfig, rd: RunDir, job: JobInfo, where: str) -> dict[str, Any]:
    """What a launch does in a run dir it holds the lock of: skip, refuse, start or resume."""
    config = plain(cfg)
    decision = rd.decide(config)
    if decision.action == "skip":
        log.info("%s%s: %s, nothing to do", where, rd.path, decision.reason)
        return _finish(job, rd, rd.read_json(rd.summary) or {}, "skip")
    if decision.action == "refuse":
        msg = (f"refused to run in {rd.path}: {decision.reason} "
               "(choose another hydra.sweep.dir or hydra.run.dir)")
        with log_to_file(rd.log, file_only):
            log.error("%s%s", where, msg)
        return _finish(job, rd, {"status": "refused", "error": msg}, "refuse")
    with log_to_file(rd.log, file_only):
        summary = _execute(cfg, rd, config, job, decision.action == "resume", decision.reason)
    return _finish(job, rd, summary, decision.action)


def _finish(job: JobInfo, rd: RunDir, summary: dict[str, Any], action: str) -> dict[str, Any]:
    record_outcome(job, {"num": job.num, "dir": str(rd.path), "action": action,
                         "status": summary.get("status"), "error": summary.get("error"),
                         "epochs_completed": summary.get("epochs_completed")})
    return summary


def _execute(cfg: DictConfig, rd: RunDir, config: dict[str, Any], job: JobInfo, resume: bool,
             note: str) -> dict[str, Any]:
    where = f"[{job.label}] " if job.label else ""
    with Recorder.begin(rd, config, _overrides(), resume=resume) as rec:
        # every job sets its threads: joblib reuses its worker processes. A resume reuses the
        # count in the run record (thread counts change float rounding); auto is resolved from
        # the model's size once it is built, one thread until then.
        threads = rec.summary["threads"]
        if threads is not None and str(cfg.threads) not in ("auto", str(threads)):
            log.info("%sresuming with the run's own threads=%d, not threads=%s", where, threads,
                     cfg.threads)
        torch.set_num_threads(threads or (1 if cfg.threads == "auto" else int(cfg.threads)))
        log.info("%s%s -> %s%s", where, "resume" if resume else "start", rd.path,
                 f" ({note})" if note else "")
        try:
            trainer = _trainer(cfg, rec, resume, where, job)
            if not resume:  # the machine and code this run started on (threads now known)
                environment.write(rd.path, torch.get_num_threads(), str(cfg.device))
            with progress(cfg.epochs, trainer.epoch, job.label or rd.path.name,
                          job.launcher == "basic") as bar:
                for epoch in trainer.run():
                    row = rec.epoch(epoch, lambda: {**trainer.state_dict(),
                                                    "run_config": results_key(config)})
                    log.info(epoch_line(row, cfg.epochs, job.label))
                    if bar is not None and row["epoch"] > 0:
                        bar.update(1)
                    stop = signals.requested()  # this epoch's rows and checkpoint are on disk
                    if stop and row["epoch"] < cfg.epochs and trainer.status == RUNNING:
                        rec.interrupt(_stopped(stop, row["epoch"], cfg.epochs))
                        break
            if not rec.interrupted:
                with rec.timed("eval"):
                    test = trainer.test_metrics()
                rec.end(trainer.status, test)
        except KeyboardInterrupt:  # a second signal: stop at once; the checkpoint is the last epoch's
            epoch = rec.rows[-1]["epoch"] if rec.rows else 0
            rec.interrupt(_stopped(signals.requested() or "SIGINT", epoch, cfg.epochs))
        except Exception as e:  # failures are data: record, never raise out of a job
            rec.fail(f"{type(e).__name__}: {e}")
            log.error("%sfailed: %s", where, rec.summary["error"])
            file_only.error("traceback", exc_info=True)
    summary = rec.summary
    pngs = _draw_curves(cfg, rd, summary["status"], job) if rec.rows else []
    log.info("%s%s after %d epochs in %.1fs -> %s%s", where, summary["status"],
             summary["epochs_completed"], summary["wall_time_s"], rd.path,
             f" ({', '.join(p.name for p in pngs)})" if pngs else "")
    return summary


def _trainer(cfg: DictConfig, rec: Recorder, resume: bool, where: str, job: JobInfo
             ) -> Trainer:
    """Build the run's Trainer: restored from the checkpoint on resume, else gradient-checked
    (when cfg.gradcheck); its threads resolved; its CSV logs opened."""
    with rec.timed("data"):
        b = build(cfg)
    rec.note(task=b.data.task, n_params=b.model.n_params)
    if rec.summary["threads"] is None:  # threads=auto: 1 thread for small nets (jobs.py)
        threads = resolve_threads(str(cfg.threads), job, 6.0 * cfg.batch_size * b.model.n_params)
        torch.set_num_threads(threads)
        rec.note(threads=threads)
    trainer = b.trainer()
    if resume:
        rec.restore(trainer, results_key(plain(cfg)), cfg.epochs)
        log.info("%scontinuing from epoch %d of %d", where, trainer.epoch, cfg.epochs)
    elif cfg.gradcheck:
        with rec.timed("gradcheck"):
            err = gradcheck_directions(b.model, *gradcheck_probe(b.data),
                                       per_tensor=GRADCHECK_DIRECTIONS)
        rec.note(gradcheck_max_rel_err=err)
        log.info("%sgradient check: max relative error %.2e (tol %.0e)", where, err,
                 cfg.gradcheck_tol)
        if not err <= cfg.gradcheck_tol:
            raise GradcheckFailed(f"gradient check failed: max relative error {err:.2e} "
                                  f"> gradcheck_tol {cfg.gradcheck_tol:g}")
    rec.open_logs(trainer.columns)
    return trainer


def _draw_curves(cfg: DictConfig, rd: RunDir, status: str, job: JobInfo) -> list[Path]:
    """The run's curves_*.png when `plot` asks for them (null: a single run yes, a sweep no).
    A figure that fails is a warning: it never changes the run's status."""
    if not (cfg.plot if cfg.plot is not None else not job.multirun):
        return []
    from experiments.analysis.run_curves import draw_run  # matplotlib loads only when drawing
    o = cfg.optim
    label = (f"{cfg.data.name}, {cfg.depth}x{cfg.width} {cfg.activation.name}, init "
             f"{cfg.init.name}{', batchnorm' if cfg.batchnorm else ''}, {o.name} lr {o.lr:g}, "
             f"seed {cfg.seed}")
    try:
        return draw_run(rd.path, status, label, cfg.epochs)
    except Exception as e:
        log.warning("%s: learning curves not drawn: %s: %s", rd.path, type(e).__name__, e)
        return []


def _stopped(signal_name: str, epoch: int, epochs: int) -> str:
    """The interrupted run's note: which signal, and the epoch a resume continues from."""
    return f"stopped by {signal_name} after epoch {epoch} of {epochs}; resumes from epoch {epoch}"


def _not_started(rd: RunDir, job: JobInfo, stop: str) -> dict[str, Any]:
    """A job that begins after a stop was asked: it leaves nothing behind and trains nothing."""
    if rd.path.is_dir() and rd.is_fresh_hydra_dir():
        shutil.rmtree(rd.path)
    return _finish(job, rd, {"status": NOT_STARTED, "error": f"{stop} came first"}, "stop")


def _overrides() -> list[str]:
    """This job's command-line overrides (none when train() is called outside Hydra)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def _job(cfg: DictConfig, outcome: dict[str, Any] | None = None) -> float:
    """One Hydra job: train into Hydra's output dir; the Optuna objective (best val_acc /
    val_mse, nan if failed). `outcome` (a single run's caller) receives the dir and summary."""
    job = job_info()
    if job.launcher.startswith("submitit"):  # SLURM's SIGTERM / USR2: stop after the epoch
        signals.install_in_submitit_job()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = train(cfg, run_dir, job)
    try:
        signals.pass_on()  # stopped by submitit's USR2: now it may requeue (and exit)
    except Exception as e:  # submitit will not requeue: the run stays interrupted
        log.warning("%s", e)
    if outcome is not None:
        outcome.update(dir=run_dir, summary=summary)
    value = objective(summary)
    if job.optuna and math.isnan(value):
        raise TrialFailed(f"run {summary.get('status')}: {summary.get('error')}")
    return value


HYDRA_MAIN = dict(version_base="1.3", config_path="../conf", config_name="config")


@hydra.main(**HYDRA_MAIN)
def main(cfg: DictConfig) -> float:
    """The sweep's task function (launchers pickle it: module level, no state)."""
    return _job(cfg)


def cli() -> int:
    """Check every job of the command line, run them through Hydra, return the exit status."""
    try:
        words = launchwords.parse(sys.argv[1:])
        argv = words.argv
        if words.resume:
            p = plan(argv, CONF_DIR)
            if p is not None:
                default = Path(p.sweep_dir) if p.multirun else dryrun.run_dir(p.configs[0], 0,
                                                                                False)
                argv = launchwords.resume_argv(argv, words.resume, p.multirun, default)
        p = plan(argv, CONF_DIR)
    except (PreflightError, launchwords.LaunchWordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.argv[1:] = argv
    gc.freeze()  # the composed configs live through the launch: no collection need walk them
    if p is None:  # --help, --cfg job, ...: Hydra shows it, nothing runs
        main()
        return 0
    if words.dry_run:
        print("\n".join(dryrun.lines(p)))
        return 0
    if p.multirun:  # the tally comes from the sweep dir, even if Hydra raises
        launch = Launch.new(p.sweep_dir, p.n_jobs, argv)
        sys.argv[1:] = launch.command_line()
        latest.point(Path(p.sweep_dir))
        signals.install(launch.dir / signals.STOP_FILE)
        with sweeper.preflighted():
            status = launch.run(main)
        return signals.exit_status() or status
    outcome: dict[str, Any] = {}

    def single(cfg: DictConfig) -> float:
        return _job(cfg, outcome)

    signals.install()
    hydra.main(**HYDRA_MAIN)(single)()
    status = outcome["summary"].get("status") if outcome else None
    print(f"run {status}: {outcome.get('dir', '?')}")
    if outcome:
        latest.point(Path(outcome["dir"]))
    if status == INTERRUPTED:
        print(f"resume: {_resume_run_command(argv, Path(outcome['dir']))}  "
              f"# continues from epoch {outcome['summary'].get('epochs_completed')}")
        return signals.exit_status() or 1
    return 1 if status in BAD or status is None else 0


def _resume_run_command(argv: list[str], run_dir: Path) -> str:
    """The command that continues this single run in place."""
    user = [a for a in argv if not a.lstrip("+~").startswith("hydra.run.dir=")]
    return shlex.join(["python", "experiments/run.py", *user, f"hydra.run.dir={run_dir}"])


def _exit(status: int) -> NoReturn:
    """Exit with `status`. Everything is written and closed by now; `gc.freeze()` spares the
    interpreter's final garbage collection a walk over every object torch, Hydra and the runs
    made (~0.4 s on this machine, a twentieth of a small study). Exit handlers, flushes and
    module teardown still run as usual."""
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    try:
        _exit(cli())
    except KeyboardInterrupt:  # before any run started (while checking the command line)
        print("\ninterrupted: nothing started", file=sys.stderr)
        _exit(130)
