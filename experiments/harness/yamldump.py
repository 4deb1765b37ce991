"""OmegaConf's YAML text written by libyaml's emitter: the same text, a third of the time."""

from __future__ import annotations

import re
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf._utils import _ensure_container, get_omega_conf_dumper

_ORIGINAL = OmegaConf.to_yaml
_C_DUMPER: type | None = None
# where a double-quoted scalar begins in block-style YAML: at a line's start (a key, an item's
# continuation) or after "- ", ": ", "? "; a '"' anywhere else is inside a plain or
# single-quoted scalar
_DOUBLE_QUOTED = re.compile(r'(?m)(?:^ *|[-?:] )"')


def _c_dumper() -> type:
    """libyaml's dumper with OmegaConf's representers (its quoting of "true", "1", ...)."""
    global _C_DUMPER
    if _C_DUMPER is None:
        own = get_omega_conf_dumper()  # adds OmegaConf's str representer on first use
        _C_DUMPER = type("OmegaConfCDumper", (yaml.CDumper,), {
            "yaml_representers": dict(own.yaml_representers),
            "yaml_multi_representers": dict(own.yaml_multi_representers)})
    return _C_DUMPER


def to_yaml(cfg: Any, *, resolve: bool = False, sort_keys: bool = False) -> str:
    """`OmegaConf.to_yaml`, emitted by libyaml where that gives the same text.

    Hydra writes three YAML files into every job's `.hydra/` (~11 ms a job with PyYAML's Python
    emitter, ~4 ms with libyaml's). The two emitters choose the same style for every scalar and
    write plain, single-quoted and block text alike; they differ only inside double-quoted
    scalars (where a long line is folded; `\\x85`, characters beyond U+FFFF). So text that
    may hold a double-quoted scalar (a '"' where one can begin) is written again by OmegaConf's
    own emitter. `tests/test_yamldump.py` compares the two on every config and on random
    strings (and 40,000 random configs gave the same text before it was written)."""
    cfg = _ensure_container(cfg)
    container = OmegaConf.to_container(cfg, resolve=resolve, enum_to_str=True)
    style = {"default_flow_style": False, "allow_unicode": True, "sort_keys": sort_keys}
    text = yaml.dump(container, Dumper=_c_dumper(), **style)
    if _DOUBLE_QUOTED.search(text):
        text = yaml.dump(container, Dumper=get_omega_conf_dumper(), **style)
    return text


def install() -> None:
    """Make `OmegaConf.to_yaml` this function (when PyYAML has libyaml; idempotent)."""
    if getattr(yaml, "__with_libyaml__", False):
        OmegaConf.to_yaml = staticmethod(to_yaml)  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    """Back to OmegaConf's own (tests compare the two)."""
    OmegaConf.to_yaml = staticmethod(_ORIGINAL)  # type: ignore[method-assign,assignment]
