"""Hydra entry point: config -> data, model, optimizer -> train -> one run directory on disk.

    python experiments/run.py                                   # one run: outputs/runs/<time>/
    python experiments/run.py -m activation=relu,sigmoid        # a sweep: outputs/sweeps/<time>/
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from experiments.harness import signals
from experiments.harness.build import build, gradcheck_probe, plain
from experiments.harness.jobs import JobInfo, job_info, record_outcome, resolve_threads
from experiments.harness.launch import Launch
from experiments.harness.logging_utils import epoch_line, log_to_file, progress
from experiments.harness.phases import Phases
from experiments.harness.preflight import PreflightError, plan
from experiments.harness.rundir import (
    CsvLog,
    RunDir,
    atomic_torch_save,
    atomic_write_json,
    read_csv,
    truncate_csv,
)
from experiments.harness.summary import best_metrics, objective, parse_row, scalar, versions
from experiments.harness.validate import CONF_DIR, ConfigError, validate
from experiments.record import BAD, INTERRUPTED, LAYER_COLUMNS
from mlp_core.gradcheck import gradcheck
from mlp_core.train import Trainer

log = logging.getLogger("harness.run")
file_only = logging.getLogger("harness.file")  # tracebacks: run.log only, not the console
file_only.propagate = False

LAST_RUN: tuple[Path, dict[str, Any]] | None = None  # the in-process run (dir, summary), for cli()


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
    try:
        return _train(cfg, rd, job)
    except Exception as e:  # bookkeeping itself failed (disk full, permissions): still data
        error = f"{type(e).__name__}: {e}"
        log.error("%s: failed: %s", rd.path, error)
        summary = {"status": "failed", "error": error}
        try:
            atomic_write_json(rd.summary, {**(rd.read_json(rd.summary) or {}), **summary})
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
                         "status": summary.get("status"), "error": summary.get("error")})
    return summary


def _execute(cfg: DictConfig, rd: RunDir, config: dict[str, Any], job: JobInfo, resume: bool,
             note: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    threads = resolve_threads(str(cfg.threads), job)
    torch.set_num_threads(threads)  # every job: joblib reuses its worker processes
    where = f"[{job.label}] " if job.label else ""
    prev = (rd.read_json(rd.summary) or {}) if resume else {}
    if not resume:
        rd.start_fresh(config, _overrides())
    summary: dict[str, Any] = {
        "status": "running", "task": prev.get("task"), "dataset": cfg.data.name,
        "final": {}, "best": {}, "test": {}, "epochs_completed": 0, "wall_time_s": 0.0,
        "n_params": None, "gradcheck_max_rel_err": prev.get("gradcheck_max_rel_err"),
        "error": None, "resumes": prev.get("resumes", -1) + 1 if resume else 0,
        "threads": threads, "versions": versions(),
    }
    wall_before = float(prev.get("wall_time_s") or 0.0)
    phases = Phases()
    atomic_write_json(rd.summary, summary)
    log.info("%s%s -> %s%s", where, "resume" if resume else "start", rd.path,
             f" ({note})" if note else "")
    rows: list[dict[str, Any]] = []
    logs: list[CsvLog] = []
    try:
        with phases.timed("data"):
            b = build(cfg)
        summary.update(task=b.data.task, n_params=b.model.n_params)
        trainer = Trainer(b.model, b.optimizer, b.schedule, b.data, b.train)
        if resume:
            # CPU first: RNG states must be CPU tensors; params and buffers are copied over.
            trainer.load_state_dict(torch.load(rd.checkpoint, map_location="cpu",
                                               weights_only=True))
            truncate_csv(rd.metrics, trainer.epoch)
            truncate_csv(rd.layers, trainer.epoch)
            rows = [parse_row(r) for r in read_csv(rd.metrics)]
        elif cfg.gradcheck:
            with phases.timed("gradcheck"):
                err = gradcheck(b.model, *gradcheck_probe(b.data))
            summary["gradcheck_max_rel_err"] = err
            log.info("%sgradient check: max relative error %.2e (tol %.0e)", where, err,
                     cfg.gradcheck_tol)
            if not err <= cfg.gradcheck_tol:
                raise GradcheckFailed(f"gradient check failed: max relative error {err:.2e} "
                                      f"> gradcheck_tol {cfg.gradcheck_tol:g}")
        logs = [CsvLog(rd.metrics, trainer.columns), CsvLog(rd.layers, LAYER_COLUMNS)]
        with progress(cfg.epochs, trainer.epoch, job.label or rd.path.name,
                      job.launcher == "basic") as bar:
            for rec in trainer.run():
                t_write = time.perf_counter()
                for name, seconds in rec.timing.items():
                    phases.add(name.removesuffix("_s"), seconds)
                metrics = {k: scalar(v) for k, v in rec.metrics.items()}
                logs[0].write([metrics])
                logs[1].write([{k: scalar(v) for k, v in r.items()} for r in rec.layers])
                atomic_torch_save(rd.checkpoint, trainer.state_dict())
                rows.append(metrics)
                log.info(epoch_line(metrics, cfg.epochs, job.label))
                if bar is not None and metrics["epoch"] > 0:
                    bar.update(1)
                summary.update(epochs_completed=metrics["epoch"], final=metrics,
                               wall_time_s=wall_before + time.perf_counter() - t0,
                               phases_s=phases.as_dict())
                atomic_write_json(rd.summary, summary)
                phases.add("writes", time.perf_counter() - t_write)
                stop = signals.requested()
                if stop:  # a clean stop: this epoch's rows and checkpoint are on disk
                    summary.update(status=INTERRUPTED,
                                   error=f"stopped by {stop} after epoch {metrics['epoch']}")
                    break
        if summary["status"] != INTERRUPTED:
            summary["status"] = trainer.status
            with phases.timed("eval"):
                summary["test"] = {k: scalar(v) for k, v in trainer.test_metrics().items()}
    except Exception as e:  # failures are data: record, never raise out of a job
        summary.update(status="failed", error=f"{type(e).__name__}: {e}")
        log.error("%sfailed: %s", where, summary["error"])
        file_only.error("traceback", exc_info=True)
    finally:
        for f in logs:
            f.close()
        summary.update(best=best_metrics(rows, summary["task"]),
                       final=rows[-1] if rows else {},
                       epochs_completed=rows[-1]["epoch"] if rows else 0,
                       wall_time_s=wall_before + time.perf_counter() - t0,
                       phases_s=phases.as_dict())
        atomic_write_json(rd.summary, summary)
    pngs = _draw_curves(cfg, rd, summary["status"], job) if rows else []
    log.info("%s%s after %d epochs in %.1fs -> %s%s", where, summary["status"],
             summary["epochs_completed"], summary["wall_time_s"], rd.path,
             f" ({', '.join(p.name for p in pngs)})" if pngs else "")
    return summary


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


def _overrides() -> list[str]:
    """This job's command-line overrides (none when train() is called outside Hydra)."""
    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """One Hydra job; returns the Optuna objective (best val_acc / val_mse, nan if failed)."""
    global LAST_RUN
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    job = job_info()
    if job.launcher.startswith("submitit"):  # SLURM's SIGTERM / USR2: stop after the epoch
        signals.install_in_submitit_job()
    summary = train(cfg, run_dir, job)
    try:
        signals.pass_on()  # stopped by submitit's USR2: now it may requeue (and exit)
    except Exception as e:  # submitit will not requeue: the run stays interrupted
        log.warning("%s", e)
    LAST_RUN = (run_dir, summary)
    value = objective(summary)
    if job.optuna and math.isnan(value):
        raise TrialFailed(f"run {summary.get('status')}: {summary.get('error')}")
    return value


def cli() -> int:
    """Check every job of the command line, run them through Hydra, return the exit status."""
    argv = sys.argv[1:]
    try:
        p = plan(argv, CONF_DIR)
    except PreflightError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if p is not None and p.multirun:  # the tally comes from the sweep dir, even if Hydra raises
        launch = Launch.new(p.sweep_dir, p.n_jobs, argv)
        sys.argv[1:] = launch.command_line()
        return launch.run(main)
    main()
    if LAST_RUN is not None:
        run_dir, summary = LAST_RUN
        status = summary.get("status")
        print(f"run {status}: {run_dir}")
        return 1 if status in BAD else 0
    return 0


if __name__ == "__main__":
    sys.exit(cli())
