"""experiments/harness/launch.py: a launch reaches its jobs through their Hydra config, and its
tally comes from the sweep dir, printed even when the launcher raises."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from experiments.harness import schema  # noqa: F401 (registers the structured configs)
from experiments.harness.jobs import job_info, record_outcome
from experiments.harness.launch import Launch
from experiments.paths import CONF_DIR


def test_a_job_learns_its_launch_and_the_job_count_from_its_own_config_not_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launch = Launch.new(tmp_path / "sweep", 7, ["-m", "seed=0,1,2,3,4,5,6"])
    for k in [k for k in os.environ if k.startswith(("MLP", "HYDRA", "SUBMITIT", "SLURM"))]:
        monkeypatch.delenv(k)
    overrides = [o for o in launch.command_line() if o.startswith("hydra.")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[*overrides, "seed=3", "hydra.job.num=3"])
    cfg.hydra.mode = RunMode.MULTIRUN
    hc = HydraConfig.instance()
    before = hc.cfg
    hc.set_config(cfg)
    try:
        job = job_info()
        assert (job.launch, job.num, job.total, job.label) == (launch.id, 3, 7, "run 4 of 7")
        assert job.sweep_dir == (tmp_path / "sweep").resolve()
        record_outcome(job, {"dir": str(tmp_path / "sweep" / "3_seed=3"), "action": "fresh",
                             "status": "completed", "error": None})
    finally:
        hc.cfg = before
    assert [o["num"] for o in launch.outcomes()] == [3]


def test_the_tally_counts_every_status_and_the_jobs_that_never_reported(tmp_path: Path) -> None:
    launch = Launch.new(tmp_path, 6, ["-m", "seed=0,1,2,3,4,5"])
    for num, status, action in [(0, "completed", "skip"), (1, "diverged", "fresh"),
                                (2, "interrupted", "resume"), (3, "busy", "busy"),
                                (4, "failed", "fresh")]:
        launch.record(num, {"dir": str(tmp_path / f"{num}_seed={num}"), "action": action,
                            "status": status, "error": f"why {num}" if num > 1 else None})
    tally = launch.tally()
    lines = tally.lines()
    assert lines[0] == ("sweep stopped: 5 runs: 1 completed, 1 diverged, 1 interrupted, "
                        "1 failed, 1 busy (1 skipped (already done), 1 resumed)")
    assert "  1 of 6 job(s) did not report (worker killed or launcher stopped)" in lines
    for num, status in [(2, "interrupted"), (3, "busy"), (4, "failed")]:
        assert f"  {status}: {num}_seed={num}: why {num}" in lines
    assert not tally.all_done
    assert any(line.startswith("resume: python experiments/run.py -m seed=0,1,2,3,4,5 "
                               "hydra.sweep.dir=") for line in lines)


def test_the_tally_is_printed_and_the_exit_status_is_1_when_the_launcher_raises(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    launch = Launch.new(tmp_path, 2, ["-m", "seed=0,1"])

    def hydra_main() -> None:  # one job reported, then the launcher failed (Hydra exits 1)
        launch.record(0, {"dir": str(tmp_path / "0_seed=0"), "action": "fresh",
                          "status": "completed", "error": None})
        sys.exit(1)

    assert launch.run(hydra_main) == 1
    out = capsys.readouterr().out
    assert "sweep finished: 1 run: 1 completed" in out
    assert "1 of 2 job(s) did not report" in out and "the launcher stopped" in out
    assert not launch.dir.exists()  # the outcomes are read once, then removed


def test_a_launch_where_every_run_finished_exits_0(tmp_path: Path) -> None:
    launch = Launch.new(tmp_path, 2, ["-m", "seed=0,1"])

    def hydra_main() -> None:
        for num in (0, 1):
            launch.record(num, {"dir": str(tmp_path / f"{num}"), "action": "fresh",
                                "status": ("completed", "diverged")[num], "error": None})

    assert launch.run(hydra_main) == 0
