"""A run's own learning curves: curves_loss.png and curves_<metric>.png in its run dir."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from experiments import record
from experiments.analysis.run_curves import draw_run
from experiments.benchmarks.fake_sweep import make_fake_sweep
from experiments.paths import COMPARE_PY, RUN_PY
from experiments.paths import CONF_DIR as CONF
from experiments.run import train
from tests.helpers import cli

TINY = ["width=8", "data.n_samples=200", "threads=1", "gradcheck=false"]
MIN_BYTES = 10_000  # an axes with lines, labels and a title; an empty figure is ~3 KB


def drawn(png: Path) -> dict:
    """What the figure says it drew: points per column and the run's status."""
    return json.loads(Image.open(png).text["Description"])


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="test"):
        return compose(config_name="config", overrides=list(overrides))


def assert_curves(run: Path, metric_cols: list[str], metric_png: str) -> None:
    """Both PNGs are real plots with one point per logged epoch of every column drawn."""
    rows = pd.read_csv(run / record.METRICS)
    for png, cols in [("curves_loss.png", ["val_loss", "train_loss"]), (metric_png, metric_cols)]:
        path = run / png
        assert path.stat().st_size > MIN_BYTES, png
        points = drawn(path)["points"]
        assert points == {c: int(rows[c].notna().sum()) for c in cols}, png


@pytest.mark.slow
@pytest.mark.parametrize("data, metric_png, cols, epochs", [
    ("spirals", "curves_val_acc.png", ["val_acc", "train_acc"], 3),
    ("sine", "curves_val_mse.png", ["val_mse", "train_mse", "val_r2"], 4),
])
def test_a_single_run_draws_its_loss_and_metric_curves(tmp_path: Path, data: str, metric_png: str,
                                                       cols: list[str], epochs: int) -> None:
    run = tmp_path / "run"
    r = cli(f"data={data}", f"epochs={epochs}", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(run / record.METRICS)) == epochs + 1  # epoch 0 = at init
    assert_curves(run, cols, metric_png)
    final = [ln for ln in r.stderr.splitlines() + r.stdout.splitlines() if "completed after" in ln]
    assert final and "curves_loss.png" in final[-1] and metric_png in final[-1]


@pytest.mark.slow
def test_a_sweep_draws_curves_only_for_runs_with_plot_true(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    r = cli("-m", "plot=null,true,false", "epochs=2", *TINY, f"hydra.sweep.dir={sweep}",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    runs = {d.name.split("_")[0]: d for d in sweep.iterdir() if (d / record.METRICS).exists()}
    assert sorted(runs) == ["0", "1", "2"]
    assert not list(runs["0"].glob("*.png")) and not list(runs["2"].glob("*.png"))
    assert_curves(runs["1"], ["val_acc", "train_acc"], "curves_val_acc.png")


def test_plot_false_draws_nothing(tmp_path: Path) -> None:
    summary = train(compose_cfg("epochs=1", "plot=false", *TINY), tmp_path / "run")
    assert summary["status"] == "completed"
    assert not list((tmp_path / "run").glob("*.png"))


def test_a_diverged_run_is_drawn_up_to_its_divergence_and_says_so(tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = train(compose_cfg("epochs=6", "optim=sgd", "optim.lr=1e4", "depth=3", *TINY), run)
    assert summary["status"] == "diverged"
    rows = pd.read_csv(run / record.METRICS)
    assert len(rows) < 7
    meta = drawn(run / "curves_loss.png")
    assert meta["status"] == "diverged" and meta["diverged_at"] == int(rows["epoch"].iloc[-1])
    finite = rows["train_loss"].replace([float("inf"), -float("inf")], float("nan")).notna()
    assert meta["points"]["train_loss"] == int(finite.sum())


@pytest.mark.slow
def test_a_run_stopped_by_ctrl_c_is_drawn_up_to_its_last_epoch(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(RUN_PY), "epochs=400", "data.n_samples=2000",
                             *TINY, f"hydra.run.dir={run}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = run / "metrics.csv", time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:  # epochs 0..2
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the first signal: stop cleanly after this epoch
    proc.wait(timeout=120)
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    rows = pd.read_csv(metrics)
    assert 3 <= len(rows) < 401
    assert_curves(run, ["val_acc", "train_acc"], "curves_val_acc.png")
    assert drawn(run / "curves_loss.png")["status"] == "interrupted"


def test_draw_run_draws_an_interrupted_run_up_to_its_last_epoch(tmp_path: Path) -> None:
    run = make_fake_sweep(tmp_path / "s", 1, 8, factors={"depth": [2]}, p_diverged=0,
                          p_failed=0).iterdir()
    run_dir = next(d for d in run if (d / record.METRICS).exists())
    rows = pd.read_csv(run_dir / record.METRICS).head(4)  # stopped after epoch 3
    rows.to_csv(run_dir / record.METRICS, index=False)
    pngs = draw_run(run_dir, "interrupted", "a run", epochs=8)
    assert [p.name for p in pngs] == ["curves_loss.png", "curves_val_acc.png"]
    meta = drawn(pngs[1])
    assert meta["status"] == "interrupted" and meta["points"] == {"val_acc": 4, "train_acc": 4}


def test_draw_run_without_a_val_split_draws_the_train_columns(tmp_path: Path) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 1, 8, factors={"depth": [2]}, p_diverged=0,
                            p_failed=0)
    run_dir = next(d.parent for d in sweep.rglob(record.METRICS))
    rows = pd.read_csv(run_dir / record.METRICS)
    rows.drop(columns=[c for c in rows if c.startswith("val_")]).to_csv(run_dir / record.METRICS,
                                                                        index=False)
    pngs = draw_run(run_dir, "completed", "a run without val", epochs=8)
    assert [p.name for p in pngs] == ["curves_loss.png", "curves_train_acc.png"]
    assert drawn(pngs[0])["points"] == {"train_loss": 9}
    assert drawn(pngs[1])["points"] == {"train_acc": 9}


@pytest.mark.slow
@pytest.mark.parametrize("metric, higher", [("val_mse", False), ("val_r2", True)])
def test_a_regression_comparison_ranks_by_the_metrics_direction(tmp_path: Path, metric: str,
                                                               higher: bool) -> None:
    sweep = make_fake_sweep(tmp_path / "s", 8, 5, factors={"init": ["he", "xavier", "lecun"]},
                            task="regression", p_diverged=0, p_failed=0)
    args = [] if metric == "val_mse" else ["--metric", metric]
    r = subprocess.run([sys.executable, str(COMPARE_PY), str(sweep), "--by", "init", *args],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    groups = pd.read_csv(sweep / "compare" / "groups.csv").sort_values("rank")
    assert groups["mean"].is_monotonic_decreasing if higher else groups["mean"].is_monotonic_increasing
    direction = "higher is better" if higher else "lower is better"
    assert f"Metric: {metric} ({direction})" in (sweep / "compare" / "summary.md").read_text()
