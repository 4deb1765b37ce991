"""A researcher's day with run.py: named sweeps, `latest`, a dry run, --help, a clean stop on
SIGINT/SIGTERM and a resume with the printed command, resume=latest."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.harness import dryrun, launchwords
from experiments.harness.preflight import plan
from experiments.harness.rundir import IGNORED_KEYS
from experiments.harness.schema import Config
from experiments.harness.validate import group_options
from experiments.paths import CONF_DIR, RUN_PY
from tests.helpers import cli

TIMING = ("epoch_time_s", "samples_per_s")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def summary(d: Path) -> dict:
    return json.loads((d / "summary.json").read_text())


def tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.lstat().st_mtime_ns) for p in root.rglob("*"))


# ---------------------------------------------------------------- names, help (fast)
@pytest.mark.parametrize("overrides,suffix", [
    (["-m", "depth=1,2"], ""),
    (["-m", "depth=1,2", "name=lr study"], "_lr_study"),
    (["-m", "+experiment=init_vs_depth"], "_init_vs_depth"),
    (["-m", "+experiment=init_vs_depth", "name=mine"], "_mine"),
])
def test_a_sweep_folder_carries_its_name_or_its_presets(overrides: list[str], suffix: str) -> None:
    p = plan(overrides, CONF_DIR)
    assert p is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d" + re.escape(suffix),
                        Path(p.sweep_dir).name), p.sweep_dir
    for num, cfg in enumerate(p.configs):  # the name never reaches a run's folder or identity
        assert "name=" not in dryrun.run_dir(cfg, num, multirun=True).name
    assert "name" in IGNORED_KEYS


def test_launch_words_are_taken_out_of_the_command_line() -> None:
    w = launchwords.parse(["-m", "depth=1,2", "dry_run=true", "resume=latest"])
    assert (w.argv, w.dry_run, w.resume) == (["-m", "depth=1,2"], True, "latest")
    with pytest.raises(launchwords.LaunchWordError, match="dry_run=maybe"):
        launchwords.parse(["dry_run=maybe"])


@pytest.mark.parametrize("flags", [["-m"], ["--config-name", "config", "-m"],
                                   ["-cn", "config", "-m"], ["-m", "--config-name=config"]])
def test_resume_keeps_hydras_flags_and_their_values_apart_from_the_overrides(
        tmp_path: Path, flags: list[str]) -> None:
    """A flag's value (`--config-name study`) is not an override: with no override given, the
    sweep's recorded ones are used, and every flag keeps its value next to it."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - depth=1,2\n    - seed=0\n")
    got = launchwords.resume_argv(flags, str(sweep), True, tmp_path / "default")
    assert got == [*flags, "depth=1,2", "seed=0", f"hydra.sweep.dir='{sweep}'"]
    given = launchwords.resume_argv([*flags, "seed=3"], str(sweep), True, tmp_path / "default")
    assert given == [*flags, "seed=3", f"hydra.sweep.dir='{sweep}'"]
    assert launchwords.split_flags(["-m", "a=1", "--config-dir", "d", "b=2"]) == (
        ["-m", "--config-dir", "d"], ["a=1", "b=2"])


@pytest.mark.slow
def test_help_lists_the_real_keys_groups_and_presets_with_plus(tmp_path: Path) -> None:
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    keys = [k for k in Config.__dataclass_fields__ if k not in ("data", "optim")]
    for key in keys:
        assert re.search(rf"^  {key} ", text, re.M), key
    for group in ("data", "optim"):
        for option in group_options(group):
            assert option in text
    for preset in group_options("experiment"):
        assert re.search(rf"^  {preset} ", text, re.M), preset
    assert "+experiment=<preset>" in text and "dry_run=true" in text and "resume=latest" in text
    assert "schema" not in text and "$" not in text
    assert not (tmp_path / "outputs").exists()
    r = cli("--help", "+experiment=init_vs_depth", cwd=tmp_path)
    assert "init=he,xavier,lecun,normal" in r.stdout and "depth=2,8,16" in r.stdout


# ---------------------------------------------------------------- a real sweep, stopped
EPOCHS = 150  # long enough to be caught mid-run, short enough for CI
SLOW_JOB = [f"epochs={EPOCHS}", "width=16", "depth=2", "data.n_samples=400", "gradcheck=false",
            "threads=1"]


def _stop_a_sweep(tmp_path: Path, sig: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Start a 3-job sweep, send `sig` once job 1 has written a few epochs; its result."""
    sweep = tmp_path / "sweeps" / "s"
    cmd = [sys.executable, str(RUN_PY), "-m", "activation=relu,tanh,sigmoid", *SLOW_JOB,
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        m = list(sweep.glob("1_*/metrics.csv"))
        if m and len(m[0].read_text().splitlines()) >= 3:  # header, epochs 0 and 1
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=240)
    return sweep, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_sweep_says_how_to_resume_and_resumes_bit_for_bit(sig: int,
                                                                     tmp_path: Path) -> None:
    sweep, r = _stop_a_sweep(tmp_path, sig)
    text = r.stdout + r.stderr
    assert r.returncode == 128 + sig, text
    assert "Traceback" not in text
    resume = [line for line in text.splitlines() if line.startswith("resume: ")]
    assert len(resume) == 1, text
    command = shlex.split(resume[0].removeprefix("resume: "), comments=True)  # as a shell reads it
    assert f"hydra.sweep.dir={sweep.resolve()}" in command or f"hydra.sweep.dir={sweep}" in command
    first, second = sorted(sweep.glob("0_*"))[0], sorted(sweep.glob("1_*"))[0]
    assert summary(first)["status"] == "completed"
    stopped = summary(second)
    assert stopped["status"] == "interrupted", stopped
    epoch = stopped["epochs_completed"]
    assert 1 <= epoch < EPOCHS
    assert f"from epoch {epoch}" in text  # the tally says where it continues
    assert not list(sweep.glob("2_*/metrics.csv"))  # the third job never started

    # a dry run of the printed command lists what it would do, and creates nothing
    before = tree(tmp_path)
    dry = cli(*command[2:], "dry_run=true", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    actions = [line.split()[1] for line in dry.stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    assert actions == ["skip", "resume", "run"], dry.stdout
    assert f"resume from epoch {epoch} of {EPOCHS}" in dry.stdout
    assert tree(tmp_path) == before

    # the printed command resumes the sweep: every run completes, bit for bit
    assert command[:2] == ["python", "experiments/run.py"]
    done = cli(*command[2:], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [summary(d)["status"] for d in sorted(sweep.glob("[0-9]_*"))] == ["completed"] * 3
    assert summary(second)["resumes"] == 1
    straight = tmp_path / "straight"
    ref = cli("activation=tanh", *SLOW_JOB, f"hydra.run.dir={straight}", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert rows(second / "metrics.csv") == rows(straight / "metrics.csv")
    assert rows(second / "layers.csv") == rows(straight / "layers.csv")
    assert summary(second)["test"] == summary(straight)["test"]


@pytest.mark.slow
def test_resume_latest_finds_the_newest_sweep(tmp_path: Path) -> None:
    tiny = ["epochs=2", "width=8", "data.n_samples=200", "threads=1"]
    r = cli("-m", "depth=1,2", *tiny, "name=tiny", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    latest = tmp_path / "outputs" / "sweeps" / "latest"
    assert latest.is_symlink() and latest.resolve().name.endswith("_tiny")
    before = tree(latest.resolve())
    again = cli("-m", "resume=latest", cwd=tmp_path)  # its overrides come from the sweep's record
    assert again.returncode == 0, again.stderr
    assert "2 skipped (already done)" in again.stdout
    assert len(list((tmp_path / "outputs" / "sweeps").iterdir())) == 2  # the sweep + latest
    assert [p for p, _ in tree(latest.resolve())] == [p for p, _ in before]


def test_a_dry_run_without_a_sweep_dir_plans_fresh_runs() -> None:
    p = plan(["-m", "depth=1,2", "epochs=2"], CONF_DIR)
    assert p is not None
    text = dryrun.lines(p)
    assert text[0].startswith("dry run: 2 jobs in ") and "(nothing created)" in text[0]
    assert text[-1].startswith("would run 2")
