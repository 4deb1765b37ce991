"""Deep copies of whole OmegaConf configs through pickle: the same tree, a quarter of the time."""

from __future__ import annotations

import copy
import pickle
import types
from typing import Any

from omegaconf import DictConfig, OmegaConf

_HYDRA_UTILS_COPY: Any = None  # hydra.core.utils's own `copy` module while ours is installed
_HYDRA_SET_CONFIG: Any = None  # HydraConfig's own set_config while ours is installed


def dumps(cfg: DictConfig) -> bytes:
    """The root config `cfg` as bytes `loads` turns into a deep copy.

    OmegaConf's `__deepcopy__` walks every node in Python (~8 ms for the run config and its
    `hydra` node, 161 nodes); its pickle support (`__getstate__`, used by the launchers that
    ship configs to other processes) round-trips the same tree in ~2 ms. A direct child whose
    parent link points outside the tree (Hydra's `HydraConfig` links its `hydra` node to the
    job's config) is linked to `cfg` while pickling, as `__deepcopy__` re-links it, so the
    copy holds nothing but `cfg`'s own tree."""
    content = cfg.__dict__["_content"]
    return _pickled(cfg, list(content.values()) if isinstance(content, dict) else [], cfg)


def _pickled(obj: Any, nodes: list[Any], parent: Any) -> bytes:
    """`obj` pickled while each of `nodes` has its parent link set to `parent` (put back
    after), so pickle follows no link out of the tree being copied."""
    before = [node.__dict__["_parent"] for node in nodes]
    try:
        for node in nodes:
            node.__dict__["_parent"] = parent
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for node, link in zip(nodes, before, strict=True):
            node.__dict__["_parent"] = link


def loads(blob: bytes) -> DictConfig:
    """A new config from `dumps`'s bytes (each call a new, independent tree)."""
    cfg = pickle.loads(blob)
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"not a pickled DictConfig: {type(cfg).__name__}")
    return cfg


def deepcopy(x: Any, memo: dict[int, Any] | None = None) -> Any:
    """`copy.deepcopy(x, memo)`, with a whole config (a DictConfig without a parent) copied
    through pickle; a config holding a value pickle cannot take (`allow_objects`) falls back
    to the generic copy."""
    if memo is None and type(x) is DictConfig and x._get_parent() is None:
        try:
            return loads(dumps(x))
        except Exception:
            pass
    return copy.deepcopy(x, memo)


def masked_copy(cfg: DictConfig, key: str) -> DictConfig:
    """`OmegaConf.masked_copy(cfg, key)` for one key whose value is a config node: a new root
    holding a copy of that node, the copy made through pickle (the node's parent link set
    aside while pickling, as `__deepcopy__` sets it aside)."""
    node = cfg._get_node(key)
    if not isinstance(node, DictConfig):
        return OmegaConf.masked_copy(cfg, key)
    # the root takes the copy as it is (no second copy), then forgets that it was told to
    root = DictConfig(content={key: pickle.loads(_pickled(node, [node], None))},
                      flags={"no_deepcopy_set_nodes": True})
    root._set_flag("no_deepcopy_set_nodes", None)
    return root


def _set_config(self: Any, cfg: DictConfig) -> None:
    """Hydra's `HydraConfig.set_config` (called twice per job), its masked copy by pickle."""
    from hydra.conf import HydraConf

    assert cfg is not None
    OmegaConf.set_readonly(cfg.hydra, True)
    hydra_node_type = OmegaConf.get_type(cfg, "hydra")
    assert hydra_node_type is not None and issubclass(hydra_node_type, HydraConf)
    self.cfg = masked_copy(cfg, "hydra")
    self.cfg.hydra._set_parent(cfg)  # interpolations from the hydra node into the job's config


def install() -> None:
    """Give Hydra's `run_job` (two deep copies of every job's config) our `deepcopy`, and its
    `HydraConfig.set_config` our `masked_copy` (idempotent)."""
    global _HYDRA_UTILS_COPY, _HYDRA_SET_CONFIG
    import hydra.core.utils as hydra_utils
    from hydra.core.hydra_config import HydraConfig

    if _HYDRA_UTILS_COPY is None:
        _HYDRA_UTILS_COPY = hydra_utils.copy
        hydra_utils.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore
    if _HYDRA_SET_CONFIG is None:
        _HYDRA_SET_CONFIG = HydraConfig.set_config
        HydraConfig.set_config = _set_config  # type: ignore[method-assign]


def uninstall() -> None:
    """Back to Hydra's own copies (tests compare the two)."""
    global _HYDRA_UTILS_COPY, _HYDRA_SET_CONFIG
    import hydra.core.utils as hydra_utils
    from hydra.core.hydra_config import HydraConfig

    if _HYDRA_UTILS_COPY is not None:
        hydra_utils.copy = _HYDRA_UTILS_COPY  # type: ignore
        _HYDRA_UTILS_COPY = None
    if _HYDRA_SET_CONFIG is not None:
        HydraConfig.set_config = _HYDRA_SET_CONFIG  # type: ignore[method-assign]
        _HYDRA_SET_CONFIG = None
