"""configcopy's pickled copies are what copy.deepcopy makes: every node, flag, type and link."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from omegaconf import DictConfig, ListConfig, Node, OmegaConf, ReadonlyConfigError

import experiments.harness.schema  # noqa: F401 (registers the structured configs)
from experiments.harness import compose_cache, configcopy
from tests.helpers import hydra_composed

COMPOSED = [
    [],
    ["data=digits", "optim=sgd", "optim.lr=0.05", "activation=sigmoid", "seed=1"],
    ["+experiment=batchnorm_lr", "seed=2"],
    ["optim=adam", "+notes=hello", "name='a run'"],
    ["data=csv", "data.path=/tmp/a.csv", "data.target=y"],
    ["optim.lr=${optim.weight_decay}", "optim.weight_decay=0.1"],
]
FLAGS = ("readonly", "struct", "allow_objects", "convert", "no_deepcopy_set_nodes")


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    from hydra.core.hydra_config import HydraConfig

    before = HydraConfig.instance().cfg
    yield
    compose_cache._CACHE.clear()
    configcopy.uninstall()
    HydraConfig.instance().cfg = before


def _nodes(node: Node, path: str = "") -> Iterator[tuple[str, Node]]:
    yield path, node
    if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
        for key in node.__dict__["_content"]:
            yield from _nodes(node._get_node(key), f"{path}.{key}")
    elif isinstance(node, ListConfig) and not node._is_none() and not node._is_missing():
        for i in range(len(node)):
            yield from _nodes(node._get_node(i), f"{path}[{i}]")


def _describe(root: Node) -> list[tuple[Any, ...]]:
    """Every node: path, class, metadata (own flags too), effective flags, value, and where its
    parent link points (the path of the parent in the same tree, or 'outside')."""
    where = {id(n): p for p, n in _nodes(root)}
    rows = []
    for path, n in _nodes(root):
        m = n._metadata
        parent = n._get_parent()
        link = None if parent is None else where.get(id(parent), "outside")
        value = None if isinstance(n, DictConfig | ListConfig) else n._value()
        meta = {f.name: repr(getattr(m, f.name)) for f in dataclasses.fields(m)}
        rows.append((path, type(n).__name__, meta, tuple(n._get_flag(f) for f in FLAGS),
                     repr(value), link))
    return rows


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    """The job's part, interpolations resolved (the hydra node's need a job number)."""
    return {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
            for k, v in cfg.items() if k != "hydra"}


@pytest.mark.parametrize("overrides", COMPOSED)
def test_a_composed_config_copies_as_deepcopy_copies_it(overrides: list[str]) -> None:
    cfg = hydra_composed(overrides)
    OmegaConf.set_readonly(cfg.hydra, True)  # as Hydra leaves it for the job
    want, got = copy.deepcopy(cfg), configcopy.deepcopy(cfg)
    assert _describe(got) == _describe(want) == _describe(cfg)
    assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(cfg)
    assert _resolved(got) == _resolved(cfg)
    assert not {id(n) for _, n in _nodes(got)} & {id(n) for _, n in _nodes(cfg)}  # no sharing
    with pytest.raises(ReadonlyConfigError):  # readonly came along
        got.hydra.job.name = "x"
    got.seed = 12345
    assert cfg.seed != 12345


def test_a_node_linked_outside_its_tree_is_linked_to_the_copy() -> None:
    """Hydra's HydraConfig: a masked copy whose `hydra` node points back at the job's config
    (for interpolations); deepcopy re-links it to the copy, and so does configcopy, without
    copying the job's config along or changing the original's link."""
    cfg = hydra_composed(["seed=4"])
    masked = OmegaConf.masked_copy(cfg, "hydra")
    masked.hydra._set_parent(cfg)
    want, got = copy.deepcopy(masked), configcopy.deepcopy(masked)
    assert _describe(got) == _describe(want)
    assert got.hydra._get_parent() is got and masked.hydra._get_parent() is cfg
    assert list(got) == ["hydra"]


def test_a_value_pickle_cannot_take_falls_back_to_deepcopy() -> None:
    cfg = OmegaConf.create({"a": 1}, flags={"allow_objects": True})
    cfg.fn = lambda: 1  # pickle cannot take a lambda; deepcopy keeps the same function
    got = configcopy.deepcopy(cfg)
    assert got.fn is cfg.fn and got.a == 1 and got is not cfg


def test_parts_and_other_values_go_to_copy_deepcopy() -> None:
    cfg = hydra_composed([])
    part = configcopy.deepcopy(cfg.optim)  # a subtree: its parent is kept, as deepcopy keeps it
    assert part._get_parent() is cfg and part is not cfg.optim
    assert configcopy.deepcopy([1, {"a": 2}]) == [1, {"a": 2}]
    with pytest.raises(TypeError, match="not a pickled DictConfig"):
        configcopy.loads(configcopy.pickle.dumps([1]))


@pytest.mark.parametrize("overrides", COMPOSED[:3])
def test_hydras_masked_copy_of_a_job_is_omegaconfs(overrides: list[str]) -> None:
    from hydra.core.hydra_config import HydraConfig

    cfg = hydra_composed(overrides)
    want = OmegaConf.masked_copy(cfg, "hydra")
    got = configcopy.masked_copy(cfg, "hydra")
    assert _describe(got) == _describe(want)
    assert got.hydra._get_parent() is got and cfg.hydra._get_parent() is cfg
    HydraConfig.instance().set_config(cfg)  # Hydra's own
    own = _describe(HydraConfig.instance().cfg)
    configcopy.install()
    HydraConfig.instance().set_config(cfg)
    ours = HydraConfig.instance().cfg
    assert _describe(ours) == own
    assert ours.hydra._get_parent() is cfg  # linked back for interpolations, as Hydra links it
    assert _describe(configcopy.masked_copy(cfg, "seed")) == _describe(
        OmegaConf.masked_copy(cfg, "seed"))  # a value: OmegaConf's own


def test_hydra_run_job_and_set_config_use_it_while_installed() -> None:
    import hydra.core.utils as hydra_utils
    from hydra.core.hydra_config import HydraConfig

    own, own_set = hydra_utils.copy, HydraConfig.set_config
    configcopy.install()
    configcopy.install()  # idempotent
    assert hydra_utils.copy.deepcopy is configcopy.deepcopy
    assert HydraConfig.set_config is configcopy._set_config
    configcopy.uninstall()
    assert hydra_utils.copy is own and HydraConfig.set_config is own_set
