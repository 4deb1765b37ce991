"""Nothing silently wrong, nothing written twice: each test reproduces one failure of issue 10."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.harness.names import inside, run_name
from experiments.harness.preflight import PreflightError, plan
from experiments.paths import CONF_DIR, RUN_PY


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(RUN_PY), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- 5. keys
@pytest.mark.parametrize("override", ["+optim.momentun=0.5", "optim.momentun=0.5",
                                      "+foo=1", "+data.bogus=1"])
def test_an_unknown_key_is_refused_with_or_without_plus(override: str) -> None:
    key = override.lstrip("+").split("=")[0]
    with pytest.raises(PreflightError, match=f"unknown key {key} "):
        plan([override], CONF_DIR)


def test_notes_and_tags_are_free_and_stay_out_of_the_run_dir_name() -> None:
    p = plan(["-m", "+notes.author=me", "tags=[a,b]", "seed=0,1"], CONF_DIR)
    assert p is not None and p.n_jobs == 2
    assert p.configs[0].notes.author == "me" and list(p.configs[0].tags) == ["a", "b"]
    assert run_name(["+notes.author=me", "tags=[a,b]", "seed=0"], ["notes", "tags"]) == "seed=0"


@pytest.mark.parametrize("value", ["../..", "../../../../ESCAPED", "a/b", "a\\b", "x\x00y",
                                   "..", "...."])
def test_run_dir_names_have_no_separators_or_dot_dot(value: str, tmp_path: Path) -> None:
    name = run_name([f"data.target={value}", "seed=0"])
    assert "/" not in name and "\\" not in name and ".." not in name and "\x00" not in name
    assert inside(tmp_path / f"0_{name}", tmp_path)


def test_a_run_dir_outside_the_sweep_dir_is_refused_before_anything_exists() -> None:
    with pytest.raises(PreflightError, match="not inside hydra.sweep.dir"):
        plan(["-m", "seed=0,1", "hydra.sweep.subdir=../x"], CONF_DIR)


@pytest.mark.slow
def test_dot_dot_values_create_nothing_outside_the_sweep_dir(tmp_path: Path) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    r = cli("-m", "+foo=../../ESCAPED", "hydra.sweep.dir=s", cwd=work)
    assert r.returncode == 2 and "unknown key foo" in r.stderr
    r = cli("-m", "data=csv", f"data.path={csv}", "data.target=../..", "epochs=1",
            "hydra.sweep.dir=s", "+notes=hi", cwd=work)
    assert r.returncode == 1  # the target column does not exist: a failed run, recorded
    runs = [p.name for p in (work / "s").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert runs == ["0_data.target=___,data=csv,epochs=1"]
    assert sorted(p.name for p in tmp_path.rglob("*") if not inside(p, work / "s")) == \
        sorted(["a", "b", "d.csv", "s"])
