"""harness/build.py: a dataset is loaded once per process and reused only for the same data."""

from __future__ import annotations

import os

from experiments.harness import schema  # noqa: F401  (registers the structured configs)
from experiments.harness.build import build_data


def test_the_next_job_with_the_same_data_reuses_the_loaded_dataset(make_cfg) -> None:
    a = build_data(make_cfg("data=moons", "seed=0"))
    assert build_data(make_cfg("data=moons", "seed=1", "activation=tanh")) is a  # same data
    b = build_data(make_cfg("data=moons", "data.seed=1"))
    assert b is not a and not b.X_train.equal(a.X_train)
    c = build_data(make_cfg("data=moons", "dtype=float64"))
    assert c.X_train.dtype != a.X_train.dtype


def test_a_csv_file_changed_between_jobs_is_read_again(make_cfg, tmp_path) -> None:
    path = tmp_path / "d.csv"
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(40))
    path.write_text("x1,x2,y\n" + rows + "\n")
    cfg = make_cfg("data=csv", f"data.path={path}", "data.target=y")
    first = build_data(cfg)
    path.write_text("x1,x2,y\n" + rows.replace(",0\n", ",1\n", 3) + "\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    second = build_data(cfg)
    assert second is not first and not second.y_train.equal(first.y_train)
