"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.harness import schema  # noqa: F401  (registers the structured configs)
from experiments.paths import CONF_DIR


@pytest.fixture(scope="session", autouse=True)
def _compose_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The composed configs the harness keeps on disk (compose_cache), in a folder of this
    test session's (the processes the tests start inherit it), not the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("compose_cache")
    before = os.environ.get("MLP_COMPOSE_CACHE")
    os.environ["MLP_COMPOSE_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("MLP_COMPOSE_CACHE", None)
    else:
        os.environ["MLP_COMPOSE_CACHE"] = before


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose conf/config.yaml with overrides, as Hydra would for one job."""

    def _make(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="test"):
            return compose(config_name="config", overrides=list(overrides))

    return _make
