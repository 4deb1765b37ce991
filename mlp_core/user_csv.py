"""A user's CSV file as (X, y): read right or refused with one line naming file, column and row.

Task inference (task="auto"): a target whose every value is a number with an integer value and
that has at most MAX_INFERRED_CLASSES distinct values is a classification target; any other
all-numeric target is a regression target; an all-text target is a classification target; a
target mixing numbers and text is refused (say task=classification to take every value as a
label). task="classification" / "regression" overrides the inference.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

MAX_INFERRED_CLASSES = 20


def _fail(msg: str) -> NoReturn:
    raise ValueError(msg)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _text(path: Path) -> str:
    """The file's text as UTF-8 (a BOM allowed); a decode error names the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        _fail(f"csv file {path}: line {line} is not valid UTF-8 (byte 0x{data[e.start]:02x}); "
              "save the file as UTF-8")


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of every non-blank data row."""
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    rows = []
    for r in reader:
        if any(c.strip() for c in r):
            rows.append((reader.line_num, [c.strip() for c in r]))
    if not rows:
        _fail(f"csv file {path} is empty")
    (_, header), body = rows[0], rows[1:]
    if not body:
        _fail(f"csv file {path} has a header but no data rows")
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            _fail(f"csv file {path}: duplicate column name {name!r} (columns {seen[name]} and {i})")
        seen[name] = i
    for line, r in body:
        if len(r) != len(header):
            _fail(f"csv file {path}: row {line} has {len(r)} fields, the header has {len(header)}")
    return header, body


def _feature(path: Path, name: str, cells: list[str], lines: list[int]) -> np.ndarray:
    """A feature column as float64: every cell a finite number, its std finite."""
    col = np.empty(len(cells))
    for i, cell in enumerate(cells):
        v = _number(cell)
        if v is None or not math.isfinite(v):
            what = "missing value" if cell == "" else f"non-numeric value {cell!r}" if v is None \
                else f"non-finite value {cell!r}"
            _fail(f"csv file {path}: {what} in feature column {name!r}, row {lines[i]}")
        col[i] = v
    with np.errstate(over="ignore", invalid="ignore"):
        std = col.std()
    if not math.isfinite(std):
        i = int(np.abs(col).argmax())
        _fail(f"csv file {path}: feature column {name!r} overflows float64 when standardized "
              f"(value {cells[i]} at row {lines[i]}); rescale it")
    return col


def _target(path: Path, name: str, cells: list[str], lines: list[int], task: str
            ) -> tuple[np.ndarray, str, tuple]:
    """The target as class indices (with the classes) or float64 values, and the task."""
    nums = [_number(c) for c in cells]
    for i, (cell, v) in enumerate(zip(cells, nums, strict=True)):
        if cell == "":
            _fail(f"csv file {path}: missing value in target column {name!r}, row {lines[i]}")
        if v is not None and not math.isfinite(v):
            _fail(f"csv file {path}: non-finite value {cell!r} in target column {name!r}, "
                  f"row {lines[i]}")
    text = [i for i, v in enumerate(nums) if v is None]
    numeric = not text
    if task == "auto":
        if text and len(text) < len(cells):
            i = text[0]
            _fail(f"csv file {path}: target column {name!r} mixes numbers and text "
                  f"(row {lines[i]}: {cells[i]!r}); set data.task=classification to take "
                  "every value as a label, or fix the row")
        small = numeric and all(float(v).is_integer() for v in nums) \
            and len(set(nums)) <= MAX_INFERRED_CLASSES
        task = "classification" if not numeric or small else "regression"
    if task == "regression":
        if not numeric:
            i = text[0]
            _fail(f"csv file {path}: target column {name!r} is not numeric; use "
                  f"task=classification (row {lines[i]}: {cells[i]!r})")
        return np.array(nums, dtype=np.float64), task, ()
    labels: list[Any] = [int(v) if float(v).is_integer() else v for v in nums] if numeric \
        else list(cells)  # numeric labels: ordered by value, ints kept as ints
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        _fail(f"csv file {path}: target column {name!r} has a single class ({classes[0]!r}); "
              "classification needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels]), task, classes


def read_csv(path: Any, target: Any, task: str) -> tuple[np.ndarray, np.ndarray, str, tuple]:
    """Read a header + numeric-features csv; returns X, y, task, classes."""
    if path is None:
        _fail("dataset 'csv' needs option path=<file.csv>")
    p = Path(path).expanduser()
    if p.is_dir():
        _fail(f"csv path {p} is a directory, not a file")
    if not p.is_file():
        raise FileNotFoundError(f"csv file not found: {p}")
    header, body = _rows(p)
    if target is None or target not in header:
        _fail(f"target column {target!r} not found in {p}; available columns: {', '.join(header)}")
    feats = [c for c in header if c != target]
    if not feats:
        _fail(f"csv file {p} has no feature columns besides target {target!r}")
    lines = [line for line, _ in body]
    cols = dict(zip(header, (list(c) for c in zip(*(r for _, r in body), strict=True)),
                    strict=True))
    X = np.stack([_feature(p, c, cols[c], lines) for c in feats], axis=1)
    y, task, classes = _target(p, target, cols[target], lines, task)
    return X, y, task, classes
