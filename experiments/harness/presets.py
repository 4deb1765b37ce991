"""Presets (conf/experiment/*.yaml) composed as run.py composes them, for tests and benchmarks.

    cfg = preset_config("he_vs_xavier_deep", "init=he", "seed=0")  # one job's config
    b = from_preset("he_vs_xavier_deep", "init=he", "seed=0")       # ... built
    records = list(b.trainer().run())
    jobs = preset_jobs("he_vs_xavier_deep")                         # every job of the sweep

A preset's values are typed once, in its YAML file; code that needs them composes it here.
"""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from experiments.harness.build import Built, build
from experiments.harness.preflight import plan
from experiments.harness.validate import validate
from experiments.paths import CONF_DIR


def preset_config(name: str, *overrides: str) -> DictConfig:
    """`+experiment=<name>` with `overrides`, composed as one job and validated. Its sweep
    (hydra.sweeper.params) is not expanded: a swept key keeps its preset or schema value unless
    an override sets it (e.g. "init=xavier", "seed=1")."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="preset"):
        cfg = compose(config_name="config", overrides=[f"+experiment={name}", *overrides])
    validate(cfg)
    return cfg


def preset_jobs(name: str, *overrides: str) -> list[DictConfig]:
    """The validated config of every job `run.py -m +experiment=<name> <overrides>` runs
    (an Optuna preset: its base config)."""
    p = plan(["-m", f"+experiment={name}", *overrides], CONF_DIR)
    assert p is not None  # a multirun command line always composes
    jobs = []
    for cfg in p.configs:
        job = cfg.copy()
        with open_dict(job):
            del job["hydra"]
        jobs.append(job)
    return jobs


def from_preset(name: str, *overrides: str) -> Built:
    """Dataset, model, optimizer, schedule and TrainConfig of `preset_config(name, *overrides)`."""
    return build(preset_config(name, *overrides))
