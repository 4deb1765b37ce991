"""Hydra's config composition, cached: a sweep's jobs are one composed base plus their values."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobRuntime
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from experiments.harness import configcopy

# `key=value`, `+key=value`, `++key=value` with a plain value, bare or quoted (no sweep, list,
# dict, escape or interpolation): the only lines applied to a cached base instead of composed.
_PLAIN = re.compile(r"""^(\+{0,2})([A-Za-z_][\w-]*(?:\.[\w-]+)*)="""
                    r"""([\w.+\-:/]*|'[^'\\$]*'|"[^"\\$]*")$""")
_ORIGINAL = ConfigLoaderImpl._load_configuration_impl
_CACHE: dict[Any, bytes] = {}  # the composed bases, pickled (configcopy)
_CACHE_SIZE = 64


@functools.lru_cache(maxsize=4096)
def _parse(line: str) -> Override:
    """One override line parsed by Hydra's own grammar and with its error messages (the parser
    costs milliseconds a line)."""
    return OverridesParser.create().parse_overrides([line])[0]


def _key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def split(loader: ConfigLoaderImpl, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(fixed, values) of one composition's override lines.

    values: plain value overrides (`lr=0.1`, `+notes=x`, `hydra.sweep.dir=out`) of keys that are
    not config groups: Hydra applies these to the composed config, after every group choice.
    fixed: group choices, values that are not plain (lists, dicts, interpolations), deletions,
    and any value whose key overlaps a fixed value's (their order would matter): these go
    through Hydra's full composition, and the fixed lines are the cache key. Sweep lines
    (`seed=0,1`) are in neither: Hydra's composition skips them; they are only recorded."""
    fixed, values, fixed_keys = [], [], []
    for line in overrides:
        if _parse(line).is_sweep_override():
            continue
        key = _key(line)
        group = loader.repository.group_exists(key)
        plain = _PLAIN.match(line) is not None
        if plain and not group:
            values.append(line)
        else:
            fixed.append(line)
            if not group or not plain:
                fixed_keys.append(key)
    if any(_overlaps(_key(v), k) for v in values for k in fixed_keys):
        fixed = [line for line in overrides if not _parse(line).is_sweep_override()]
        return fixed, []
    return fixed, values


def _sources(loader: ConfigLoaderImpl) -> tuple[Any, ...]:
    """The loader's config sources, with every file's size and mtime for file sources, so an
    edited config file is composed afresh."""
    out: list[Any] = []
    for s in loader.repository.get_sources():
        out.append((s.provider, s.scheme(), s.path))
        if s.scheme() == "file" and os.path.isdir(s.path):
            for p in sorted(Path(s.path).rglob("*.yaml")):
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _job_name() -> str | None:
    """The job name Hydra writes into a composition that sets none (None before it is known)."""
    try:
        return str(JobRuntime().get("name"))
    except KeyError:
        return None


def _base(loader: ConfigLoaderImpl, config_name: str | None, fixed: list[str],
          run_mode: RunMode, from_shell: bool) -> bytes:
    """The composition of the fixed lines alone, as `configcopy.dumps` bytes (cached).

    A composition made for a single run also serves a multirun: the two differ only in that a
    multirun skips config groups left missing (`???`), and a single-run composition that
    succeeded has none."""
    head = (_sources(loader), _job_name(), config_name, tuple(fixed))
    for mode in (RunMode.RUN, run_mode):
        if (*head, mode) in _CACHE:
            return _CACHE[(*head, mode)]
    blob = configcopy.dumps(_ORIGINAL(loader, config_name, fixed, run_mode, from_shell, False))
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[(*head, run_mode)] = blob
    return blob


def _load_configuration_impl(self: ConfigLoaderImpl, config_name: str | None,
                             overrides: list[str], run_mode: RunMode, from_shell: bool = True,
                             validate_sweep_overrides: bool = True) -> DictConfig:
    """Hydra's composition of `overrides`, built as Hydra builds it, from a cached base.

    Hydra composes every job from scratch (parse the command line, walk the defaults tree, load
    and merge every file: ~0.15 s), then applies the value overrides to the result. A sweep's
    jobs (and the command's own preflight, mode and master compositions) share everything but
    a few values, so the base (the composition of the fixed lines, see `split`) is composed
    once per process and each job gets its own copy (unpickled, ~1 ms); the value overrides
    are then applied by Hydra's own `_apply_overrides_to_config`, in command-line order, and
    what Hydra records of the process and the overrides (`hydra.runtime.cwd`,
    `hydra.job.env_set`, `hydra.overrides.task` and `.hydra`, `hydra.job.override_dirname`) is
    rebuilt.
    `tests/test_compose_cache.py` checks the result against Hydra's own composition."""
    self.ensure_main_config_source_available()
    parsed = [_parse(line) for line in overrides]
    if validate_sweep_overrides:  # a sweep in a single run, as Hydra checks it
        self.validate_sweep_overrides_legal(overrides=parsed, run_mode=run_mode,
                                            from_shell=from_shell)
    fixed, values = split(self, overrides)
    cfg = configcopy.loads(_base(self, config_name, fixed, run_mode, from_shell))
    ConfigLoaderImpl._apply_overrides_to_config([_parse(v) for v in values], cfg)
    task = [o for o in parsed if not o.is_hydra_override()]
    cfg.hydra.overrides.task = [o.input_line for o in task]
    cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
    with open_dict(cfg.hydra):  # what Hydra reads from the process at each composition
        cfg.hydra.runtime.cwd = os.getcwd()
        for name in cfg.hydra.job.env_copy:
            cfg.hydra.job.env_set[name] = os.environ[name]
    conf = cfg.hydra.job.config.override_dirname
    cfg.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task, kv_sep=conf.kv_sep, item_sep=conf.item_sep,
        exclude_keys=conf.exclude_keys)
    return cfg


def install() -> None:
    """Make every Hydra composition in this process go through the cache (idempotent)."""
    ConfigLoaderImpl._load_configuration_impl = _load_configuration_impl  # type: ignore[method-assign]


def uninstall() -> None:
    """Back to Hydra's own composition (tests compare the two)."""
    ConfigLoaderImpl._load_configuration_impl = _ORIGINAL  # type: ignore[method-assign]
    _CACHE.clear()
