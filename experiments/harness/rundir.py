"""A run directory on disk: atomic files, CSV appenders, and the resume/skip/refuse decision."""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import logging
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from experiments import record
from experiments.harness.schema import FREE_KEYS

# Keys that change nothing in a run's results: a re-launch that differs only in these resumes
# (or skips) instead of refusing. Thread counts can change float rounding in the last bits.
# The free annotation keys (notes, tags) are never part of a run's identity.
IGNORED_KEYS = ("threads", "gradcheck", "gradcheck_tol", "plot", "name", *FREE_KEYS)
# A running run saves its checkpoint and summary.json after its first epoch, then when this
# many seconds have passed since the last save, and at its end; metrics.csv and layers.csv get
# every epoch's rows (flushed; fsynced at this cadence too). A resume truncates the CSVs to the
# checkpoint's epoch and replays the rest, bit for bit (RNG and optimizer states are in it).
SAVE_EVERY_S = 2.0


log = logging.getLogger("harness.rundir")


class DiskFull(OSError):
    """A write ran out of space: `str(err)` is `No space left on device: <path>`."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, "No space left on device")
        self.path = path

    def __str__(self) -> str:
        return f"No space left on device: {self.path}"


def _no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def _tmp_path(path: Path) -> Path:
    """A sibling temp name (same filesystem, so os.replace is atomic); normal permissions."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a torn one.

    The rename alone survives a killed process; `durable` also fsyncs the data first, which
    only an OS crash or power loss needs (an fsync costs milliseconds on a busy disk: the
    harness asks for it once per run, at its end, not every epoch).
    Out of space: raises DiskFull naming `path` (the temp file removed, the old file intact).
    """
    tmp = _tmp_path(path)
    try:
        with tmp.open("wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if _no_space(e):
            raise DiskFull(path) from e
        raise


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Last resort on a full disk: rewrite an existing small file within its own blocks."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def jsonable(x: Any) -> Any:
    """Plain JSON values: floats that are nan/inf become null (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def atomic_write_json(path: Path, obj: Any, in_place_if_full: bool = False,
                      durable: bool = False) -> None:
    """JSON written atomically (`durable`: fsynced); `in_place_if_full`: on a full disk,
    overwrite the old file in place instead (a failure record must land even when no new block
    can be had)."""
    text = (json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n").encode()
    try:
        atomic_write_bytes(path, text, durable)
    except DiskFull:
        if not in_place_if_full:
            raise
        overwrite_in_place(path, text)


def atomic_torch_save(path: Path, obj: Any) -> None:
    """torch.save into memory, then one atomic, fsynced write (a full disk says DiskFull,
    not torch's `inline_container.cc` or `iostream error`)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class CsvLog:
    """Append rows to a CSV with a fixed header, flushed to the OS after every `write` (a killed
    process loses nothing), fsynced at most every SAVE_EVERY_S and on `close`."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        new = not path.exists() or path.stat().st_size == 0
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="raise")
        if new:
            self.writer.writeheader()
            self.file.flush()
        self._synced_at = -math.inf

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append `rows`; on a full disk, cut back to the rows before and raise DiskFull."""
        start = self.file.tell()
        try:
            self.writer.writerows(rows)
            self.file.flush()
            now = time.perf_counter()
            if now - self._synced_at >= SAVE_EVERY_S:  # was every write: ~8 ms on a busy disk
                os.fsync(self.file.fileno())
                self._synced_at = now
        except OSError as e:
            if not _no_space(e):
                raise
            self._cut(start)
            raise DiskFull(self.path) from e

    def _cut(self, size: int) -> None:
        """Drop a partly written row: truncating needs no free space."""
        try:
            self.file.close()  # its buffer may hold part of the row: drop it unflushed
        except OSError:
            pass
        os.truncate(self.path, size)
        self.file = self.path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="raise")

    def close(self) -> None:
        """Sync what the last writes left in the OS, then close; a full disk raises DiskFull."""
        try:
            if not self.file.closed:
                self.file.flush()
                os.fsync(self.file.fileno())
        except OSError as e:
            if not _no_space(e):
                raise
            raise DiskFull(self.path) from e
        finally:
            self.file.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class TornFile(ValueError):
    """A CSV whose complete rows stop before the checkpoint's epoch: it cannot be resumed."""


def truncate_csv(path: Path, last_epoch: int) -> str | None:
    """Cut `path` back to its header and complete rows of epochs <= `last_epoch`.

    Rows after the checkpoint (a kill can land in between) are dropped silently; a torn
    tail (a partial last row, NUL padding, a row that does not parse, as a power loss or a
    full disk leaves) is cut with a warning naming the file, which is also returned. Raises
    TornFile if the complete rows end before `last_epoch` (the checkpoint is ahead of them).
    """
    if not path.exists():
        return None
    data = path.read_bytes()
    good = data.split(b"\0", 1)[0]  # NUL padding: nothing from the first NUL on was written
    good = good[: good.rfind(b"\n") + 1]  # a last line without its newline is partial
    lines = good.decode("utf-8", errors="replace").splitlines(keepends=True)
    header = next(csv.reader(lines[:1]), None)
    kept, last, torn = lines[:1], -1, len(good) < len(data)
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        try:
            epoch = int(row[0])
        except (IndexError, ValueError):
            epoch = None
        if header is None or len(row) != len(header) or epoch is None or epoch < last:
            torn = True  # nothing after a damaged row can be trusted
            break
        if epoch > last_epoch:
            break
        kept.append(line)
        last = epoch
    if last < last_epoch and (kept[1:] or torn):
        raise TornFile(f"{path} ends at epoch {last} but the checkpoint is at epoch {last_epoch}: "
                       "it cannot be resumed (delete the run dir to start it again)")
    text = "".join(kept)
    if text.encode() != data:
        atomic_write_bytes(path, text.encode())
    if torn:
        note = (f"{path}: cut a torn tail ({len(data) - len(text.encode())} bytes: a partial "
                f"row, NUL bytes or a row that does not parse) back to epoch {last}")
        log.warning(note)
        return note
    return None


class CheckpointMismatch(ValueError):
    """A checkpoint that is not this run's: ahead of its epochs, or of another config."""


def check_checkpoint(state: dict[str, Any], key: dict[str, Any], epochs: int, path: Path) -> None:
    """Refuse a checkpoint whose epoch exceeds `epochs` or whose recorded config (results key)
    differs from `key`: resuming from it would call a run completed with the wrong weights."""
    epoch = state.get("epoch", 0)
    if not isinstance(epoch, int) or epoch > epochs:
        raise CheckpointMismatch(f"{path} is at epoch {epoch} but this run has epochs={epochs}: "
                                 "not this run's checkpoint")
    saved = state.get("run_config")
    if saved is not None and saved != key:
        raise CheckpointMismatch(f"{path} belongs to another config ({diff(saved, key)}): "
                                 "not this run's checkpoint")


class RunDirBusy(RuntimeError):
    """Another live process holds the run dir's lock: `str(err)` names the dir and its pid."""


class RunLock:
    """This process's hold on a run dir (fcntl.flock on <dir>/.lock); a context manager.

    The kernel drops the lock when the holder exits, however it exits (kill -9 included), so a
    dead launcher's dirs are free again, and an orphaned worker that still trains keeps its own.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunDirBusy(f"{path.parent} is busy: another process is training it "
                             f"(pid {holder})") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Decision:
    """What a launch does in a run dir: fresh | resume | skip | refuse, and why."""

    action: str
    reason: str = ""


def results_key(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a (plain) config a run's results depend on: the resume/skip/refuse key."""
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


class RunDir:
    """The files of one run (experiments/record.py), and what a launch does with them."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.metrics = self.path / record.METRICS
        self.layers = self.path / record.LAYERS
        self.summary = self.path / record.SUMMARY
        self.checkpoint = self.path / record.CHECKPOINT
        self.log = self.path / record.LOG
        self.config = self.path / record.CONFIG
        self.overrides = self.path / record.OVERRIDES
        self.lock_file = self.path / record.LOCK

    def lock(self) -> RunLock:
        """Take the run dir's lock (the dir must exist); RunDirBusy if another process has it."""
        return RunLock(self.lock_file)

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def read_config(self) -> dict[str, Any] | None:
        """The config this dir's run was started with (None if it has none or it is unreadable)."""
        try:
            cfg = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError):
            return None
        return cfg if isinstance(cfg, dict) else None

    def decide(self, config: dict[str, Any], tidy: bool = True) -> Decision:
        """Compare `config` (plain) with the one this dir's run was started with; tidy=False
        (a dry run) leaves every file as it is."""
        for tmp in self.path.glob(".*.tmp") if tidy else ():  # left by a kill mid atomic write
            tmp.unlink(missing_ok=True)
        old = self.read_config()
        if old is None:
            if self.metrics.exists() or self.summary.exists():
                return Decision("refuse", f"this run dir holds results without a readable "
                                          f"{record.CONFIG}")
            return Decision("fresh")
        key, old_key = results_key(config), results_key(old)
        if old_key != key:
            return Decision("refuse", "this run dir holds a different config: " + diff(old_key, key))
        summary = self.read_json(self.summary) or {}
        status = summary.get("status")
        if status in record.FINISHED:
            return Decision("skip", f"already {status}")
        if self.checkpoint.exists():
            return Decision("resume", f"was {status or record.INTERRUPTED}: resuming from checkpoint")
        return Decision("fresh", f"was {status or record.INTERRUPTED} before its first checkpoint")

    def start_fresh(self, config: dict[str, Any], overrides: list[str]) -> None:
        """Remove what an earlier attempt left; record the run's config and overrides, once."""
        for p in (self.metrics, self.layers, self.summary, self.checkpoint):
            p.unlink(missing_ok=True)
        atomic_write_bytes(self.overrides, yaml.safe_dump(overrides).encode())
        atomic_write_bytes(self.config, yaml.safe_dump(config, sort_keys=False).encode())

    def is_fresh_hydra_dir(self) -> bool:
        """True if the dir holds nothing but what Hydra wrote on this launch."""
        return all(p.name in (".hydra",) for p in self.path.iterdir())


def diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    """`key: old -> new` for every differing leaf, comma separated."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            sub = diff(a, b, f"{prefix}{k}.")
            if sub:
                out.append(sub)
        elif a != b:
            out.append(f"{prefix}{k}: {a} -> {b}")
    return ", ".join(out)
