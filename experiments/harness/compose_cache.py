"""Hydra's config composition, cached: a sweep's jobs are one composed base plus their values."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import pickle
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import omegaconf
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobRuntime
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from experiments.harness import configcopy
from experiments.harness.rundir import atomic_write_bytes

# `key=value`, `+key=value`, `++key=value` with a plain value, bare or quoted (no sweep, list,
# dict, escape or interpolation): the only lines applied to a cached base instead of composed.
_PLAIN = re.compile(r"""^(\+{0,2})([A-Za-z_][\w-]*(?:\.[\w-]+)*)="""
                    r"""([\w.+\-:/]*|'[^'\\$]*'|"[^"\\$]*")$""")
_ORIGINAL = ConfigLoaderImpl._load_configuration_impl
_CACHE: dict[Any, bytes] = {}  # the composed bases, pickled (configcopy)
_CACHE_SIZE = 64
# The bases on disk, one file each, shared by every process of this user (see `_disk_key`).
# MLP_COMPOSE_CACHE: their folder, or off / 0 / false / no to keep them in memory only.
CACHE_ENV = "MLP_COMPOSE_CACHE"
_DISK_FILES = 256  # the oldest beyond this many are removed when a new one is written
_DISK_FORMAT = 1  # bump when what a file holds changes meaning
_CODE = hashlib.sha256(Path(__file__).read_bytes()
                       + Path(configcopy.__file__).read_bytes()).digest()


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


def _yaml_files(root: Any) -> Iterator[tuple[str, Any]]:
    """(path under `root`, file) of every .yaml file under `root` (a Path or an importlib
    Traversable), in a fixed order. Linked folders are followed, as Hydra follows them, each
    real folder once (a link cycle ends)."""
    stack, seen = [(root, "")], set()
    while stack:
        node, rel = stack.pop()
        if isinstance(node, Path):
            real = os.path.realpath(node)
            if real in seen:
                continue
            seen.add(real)
        for child in sorted(node.iterdir(), key=lambda c: c.name, reverse=True):
            name = f"{rel}/{child.name}"
            if child.is_dir():
                stack.append((child, name))
            elif child.name.endswith(".yaml"):
                yield name, child


def _sources(loader: ConfigLoaderImpl) -> tuple[Any, ...]:
    """The loader's config sources, with every file's size and mtime for file sources, so an
    edited config file is composed afresh."""
    out: list[Any] = []
    for s in loader.repository.get_sources():
        out.append((s.provider, s.scheme(), s.path))
        if s.scheme() == "file" and os.path.isdir(s.path):
            for name, f in _yaml_files(Path(s.path)):
                st = f.stat()
                out.append((name, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _job_name() -> str | None:
    """The job name Hydra writes into a composition that sets none (None before it is known)."""
    try:
        return str(JobRuntime().get("name"))
    except KeyError:
        return None


def disk_dir() -> Path | None:
    """The folder of the composed bases on disk: $MLP_COMPOSE_CACHE, else
    $XDG_CACHE_HOME/mlp-harness/compose (~/.cache/...); None when MLP_COMPOSE_CACHE is off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    try:
        if value:
            return Path(value).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no home directory to be found: memory only
        return None
    return Path(base) / "mlp-harness" / "compose"


def _tree_digest(h: Any, root: Any) -> None:
    """Every .yaml file under `root` (`_yaml_files`), by its path under `root` and its bytes,
    into the hash `h`."""
    for name, f in _yaml_files(root):
        data = f.read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode() + data)


def _disk_key(loader: ConfigLoaderImpl, head: tuple[Any, ...], from_shell: bool) -> str:
    """The file name of a composed base on disk: a digest of everything the composition reads.

    Hydra, OmegaConf and Python's versions and this module's code (with configcopy's, which
    writes the bytes); every config source: the bytes of each YAML file of a file or package
    source (not their times: an edit within one clock tick keeps the time and the size), and
    the whole ConfigStore for the structured one (the schema's defaults are Python code); the
    job name, the config name, the fixed lines and the run mode."""
    h = hashlib.sha256(repr((_DISK_FORMAT, sys.version_info[:3], hydra.__version__,
                             omegaconf.__version__, from_shell)).encode() + _CODE)
    for s in loader.repository.get_sources():
        h.update(repr((s.provider, s.scheme(), s.path)).encode())
        if s.scheme() == "file" and os.path.isdir(s.path):
            _tree_digest(h, Path(s.path))
        elif s.scheme() == "pkg":
            _tree_digest(h, importlib.resources.files(s.path.replace("/", ".")))
        elif s.scheme() == "structured":
            h.update(pickle.dumps(ConfigStore.instance().repo, protocol=4))
    h.update(repr(head[1:]).encode())  # job name, config name, fixed lines, run mode
    return h.hexdigest()[:40] + ".pkl"


def _disk_read(folder: Path, name: str) -> bytes | None:
    """The base stored as `name`, if there and whole (it must load: a file another process is
    writing is never seen torn, but a disk can hold anything)."""
    try:
        blob = (folder / name).read_bytes()
        configcopy.loads(blob)
        return blob
    except Exception:  # missing, unreadable, corrupt, from other code: compose afresh
        return None


def _disk_write(folder: Path, name: str, blob: bytes) -> None:
    """Store `blob` as `name` (atomically; the oldest files beyond _DISK_FILES removed). A
    folder that cannot be written is no error: the composition is just not kept."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / name, blob)
        files = list(folder.glob("*.pkl"))
        if len(files) > _DISK_FILES:
            files.sort(key=lambda p: p.stat().st_mtime_ns)
            for old in files[: len(files) - _DISK_FILES]:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def _base(loader: ConfigLoaderImpl, config_name: str | None, fixed: list[str],
          run_mode: RunMode, from_shell: bool) -> bytes:
    """The composition of the fixed lines alone, as `configcopy.dumps` bytes (cached in this
    process, and on disk for the next one: `disk_dir`).

    A composition made for a single run also serves a multirun: the two differ only in that a
    multirun skips config groups left missing (`???`), and a single-run composition that
    succeeded has none."""
    head = (_sources(loader), _job_name(), config_name, tuple(fixed))
    for mode in (RunMode.RUN, run_mode):
        if (*head, mode) in _CACHE:
            return _CACHE[(*head, mode)]
    folder, name = disk_dir(), ""
    if folder is not None:
        try:
            for mode in dict.fromkeys((RunMode.RUN, run_mode)):  # run_mode's key last
                name = _disk_key(loader, (*head, mode), from_shell)
                blob = _disk_read(folder, name)
                if blob is not None:
                    _remember((*head, mode), blob)
                    return blob
        except Exception:  # a source that cannot be digested (unpicklable node): no disk
            folder = None
    blob = configcopy.dumps(_ORIGINAL(loader, config_name, fixed, run_mode, from_shell, False))
    _remember((*head, run_mode), blob)
    if folder is not None:
        _disk_write(folder, name, blob)
    return blob


def _remember(key: tuple[Any, ...], blob: bytes) -> None:
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = blob


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
