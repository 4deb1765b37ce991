"""Validate every run of a command line before Hydra creates any directory or starts a job."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from experiments.harness.names import inside
from experiments.harness.slurm import check_cpus
from experiments.harness.validate import ConfigError, allowed_for, group_options, validate

# Flags that only show information: nothing runs, so nothing to validate.
_INFO_FLAGS = ("help", "hydra_help", "info", "shell_completion", "cfg", "experimental_rerun")


class Plan:
    """What a command line will run: its composed configs (one per job), the job count and,
    for a sweep, its resolved hydra.sweep.dir."""

    def __init__(self, configs: list[DictConfig], n_jobs: int, multirun: bool, sweep_dir: str = ""
                 ) -> None:
        self.configs, self.n_jobs, self.multirun = configs, n_jobs, multirun
        self.sweep_dir = sweep_dir


def _explain(exc: Exception, overrides: Sequence[str], conf_dir: Path, name: str) -> str:
    """Turn a Hydra/OmegaConf composition error into one line naming the key and what is allowed."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    text = str(exc)
    if isinstance(exc, MissingConfigException) or "Could not find" in text:
        m = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if m:
            group, option = m.group(1).lstrip("/"), m.group(2)
            opts = re.findall(r"^\t(\S+)$", text, flags=re.M) or group_options(group)
            return f"invalid config: {group}={option} (allowed: {', '.join(opts)})"
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        value = next((o.split("=", 1)[1] for o in overrides if _key(o) == key), "?")
        return str(ConfigError(key, value, allowed_for(key)))
    if isinstance(cause, ConfigAttributeError | ConfigKeyError):
        m = re.search(r"Could not override '([^']+)'", text)
        key = m.group(1) if m else str(getattr(cause, "full_key", "?"))
        return f"invalid config: unknown key {key} ({_known_keys(key, overrides, conf_dir, name)})"
    return "invalid config: " + text.strip().splitlines()[0]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _known_keys(key: str, overrides: Sequence[str], conf_dir: Path, name: str) -> str:
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    rest = [o for o in overrides if _key(o) != key]
    try:
        cfg = compose(config_name=name, overrides=rest)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        keys = [f"{parent + '.' if parent else ''}{k}" for k in node]  # type: ignore[union-attr]
        return "allowed: " + ", ".join(keys)
    except Exception:  # the listing is a courtesy; the message stands without it
        return "see `python experiments/run.py --cfg job`"


def count_jobs(task_overrides: Sequence[str], params: dict[str, str]) -> int:
    """Jobs the basic sweeper makes of these command-line overrides and hydra.sweeper.params."""
    parsed = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in params.items()] + list(task_overrides))
    return len(_expand(parsed))


def _expand(overrides: list[Override]) -> list[list[str]]:
    """The basic sweeper's cartesian product; non-enumerable sweeps (interval) are left out."""
    axes: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if o.is_sweep_override():
            if o.is_discrete_sweep():
                axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            else:
                axes.pop(key, None)
        else:
            axes[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(c) for c in itertools.product(*axes.values())]


class PreflightError(ValueError):
    """A command line that must not start: `str(err)` is the one-line reason."""


def plan(argv: Sequence[str], conf_dir: Path, config_name: str = "config") -> Plan | None:
    """Compose and validate every job of `argv`; None if argv only asks for information."""
    args, _ = get_args_parser().parse_known_args(list(argv))
    if any(getattr(args, f, None) for f in _INFO_FLAGS) or args.config_dir or args.config_path:
        return None
    name = args.config_name or config_name
    parser = OverridesParser.create()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3", job_name="run"):
        try:
            parsed = parser.parse_overrides(args.overrides)
        except OverrideParseException as e:
            raise PreflightError("invalid override: " + str(e).strip().splitlines()[0]) from None
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if sweeps and not args.multirun:
            raise PreflightError(
                f"{sweeps[0].input_line} is a sweep: add -m (--multirun) to run one job per value"
            )
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        # A sweep's fixed part alone may be incomplete (data=csv with data.path swept):
        # compose it for hydra.sweeper.*, validate only the complete jobs.
        base = _checked(fixed, conf_dir, name, check=not args.multirun)
        if not args.multirun:
            return Plan([base], 1, multirun=False)
        sweeper = str(OmegaConf.select(base, "hydra.sweeper._target_", default=""))
        params = OmegaConf.select(base, "hydra.sweeper.params", default=None) or {}
        from_config = [f"{k}={v}" for k, v in params.items()]
        combos = _expand(parser.parse_overrides(from_config + list(args.overrides)))
        configs = [_checked(c, conf_dir, name) for c in combos]
        for num, cfg in enumerate(configs):
            _check_run_dir(cfg, num)
        if "Optuna" in sweeper:
            n_jobs = int(OmegaConf.select(base, "hydra.sweeper.n_trials", default=0) or 0)
        else:
            n_jobs = len(combos)
        too_big = check_cpus(base)
        if too_big:
            raise PreflightError(too_big)
        return Plan(configs, n_jobs, multirun=True,
                    sweep_dir=str(OmegaConf.select(base, "hydra.sweep.dir")))


def _check_run_dir(cfg: DictConfig, num: int) -> None:
    """Refuse a job whose run dir would resolve outside its sweep dir (before Hydra makes it).
    hydra.job.num is set for the resolution and put back (a copy of the config costs more
    than the check)."""
    job = cfg.hydra.job
    missing = OmegaConf.is_missing(job, "num")
    before = None if missing else job.num
    with open_dict(job):
        job.num = num
    try:
        sweep_dir = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir")))
        subdir = str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
    finally:
        with open_dict(job):
            job.num = "???" if missing else before
    if not inside(sweep_dir / subdir, sweep_dir):
        raise PreflightError(f"invalid config: run dir {subdir!r} of job {num} is not inside "
                             f"hydra.sweep.dir {sweep_dir}")


def _checked(overrides: list[str], conf_dir: Path, name: str, check: bool = True) -> DictConfig:
    try:
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    except Exception as e:  # composition failures of every kind become one line
        raise PreflightError(_explain(e, overrides, conf_dir, name)) from None
    if not check:
        return cfg
    try:
        validate(cfg)  # the hydra node is Hydra's: validate skips it
    except ConfigError as e:
        raise PreflightError(str(e)) from None
    return cfg
