"""bench.py runs end to end (quick, step section only) and writes bench.csv; no timing is asserted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from experiments.paths import REPO


def test_quick_step_bench_writes_csv_with_every_case(tmp_path):
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "bench.py"), "--quick",
                          "--only", "step", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["section", "case", "metric", "value", "unit", "target", "met"]
    assert {r["section"] for r in rows} == {"step"}
    cases = {r["case"] for r in rows if r["metric"] == "ratio"}
    assert cases == {"[2→32→3] B=64", "[64→128→128→10] B=128", "[40→256×3→10] B=256",
                     "[784→512→512→10] B=256", "[1024→1024×3→10] B=512"}
    for r in rows:
        if r["metric"] in ("mlp_core_us", "autograd_us", "gemm_peak"):
            assert float(r["value"]) > 0
        if r["metric"] == "max_param_diff":  # same init, same batches: same training
            assert float(r["value"]) < 1e-4
    assert {r["met"] for r in rows if r["metric"] == "ratio"} <= {"True", "False"}
    assert json.loads((out / "machine.json").read_text())["torch_threads"] == 1
    assert "| [2→32→3] B=64 |" in (out / "bench.md").read_text()
    assert "| [2→32→3] B=64 |" in res.stdout


def test_unknown_section_is_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "bench.py"), "--only", "gpu",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown section" in res.stderr
