"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.harness import schema  # noqa: F401  (registers the structured configs)
from experiments.paths import CONF_DIR


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose conf/config.yaml with overrides, as Hydra would for one job."""

    def _make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
            return compose(config_name="config", overrides=list(overrides))

    return _make
