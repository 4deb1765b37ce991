"""bench.py runs end to end (quick step and study sections) and writes its files; no timing is asserted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from experiments.paths import REPO


def _quick_bench(out, *args: str, timeout: float):
    """`bench.py --quick *args --out out`, which must succeed: (its process, bench.csv's rows)."""
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "bench.py"), "--quick",
                          *args, "--out", str(out)],
                         capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    with open(out / "bench.csv", newline="") as f:
        return res, list(csv.DictReader(f))


def test_quick_step_bench_writes_csv_with_every_case(tmp_path):
    out = tmp_path / "bench"
    res, rows = _quick_bench(out, "--only", "step", "--threads", "1", timeout=120)
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
    for case in cases:  # the spread of the per-pair ratios holds their median's ratio
        got = {r["metric"]: float(r["value"]) for r in rows if r["case"] == case}
        assert 0 < got["ratio_min"] <= got["ratio_max"]
        median_ratio = got["mlp_core_us"] / got["autograd_us"]  # each pair dominates: in range
        assert got["ratio_min"] * 0.999999 <= median_ratio <= got["ratio_max"] * 1.000001
    assert json.loads((out / "machine.json").read_text())["torch_threads"] == 1
    assert "| [2→32→3] B=64 |" in (out / "bench.md").read_text()
    assert "| [2→32→3] B=64 |" in res.stdout


def test_unknown_section_is_a_usage_error(tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "bench.py"), "--only", "gpu",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown section" in res.stderr


@pytest.mark.slow
def test_quick_study_bench_writes_ratio_and_breakdown(tmp_path):
    out = tmp_path / "bench"
    _, rows = _quick_bench(out, "--only", "study", "--studies", "small", "--study-epochs", "1",
                           timeout=600)
    rows = [r for r in rows if r["case"] != "machine"]
    assert {r["section"] for r in rows} == {"study"}
    metrics = {r["metric"]: r for r in rows}
    ratio, lo, hi = (float(metrics[m]["value"]) for m in ("ratio", "ratio_min", "ratio_max"))
    assert 0 < lo <= ratio <= hi
    assert metrics["ratio"]["met"] in ("True", "False")
    assert metrics["records_complete"]["met"] == "True"  # every run left its full record
    for part in ("startup", "hydra", "data", "gradcheck", "train", "eval", "layers", "writes"):
        assert float(metrics[f"phase_{part}_s"]["value"]) >= 0
    assert float(metrics["phase_train_s"]["value"]) > 0
    md = (out / "bench.md").read_text()
    assert "Where the harness's time goes" in md and "| training steps |" in md


@pytest.mark.slow
def test_quick_sklearn_bench_writes_the_ratio_with_its_spread(tmp_path):
    out = tmp_path / "bench"
    _, rows = _quick_bench(out, "--only", "sklearn", "--epochs", "2", timeout=600)
    rows = [r for r in rows if r["case"] != "machine"]
    assert {r["section"] for r in rows} == {"sklearn"}
    metrics = {r["metric"]: r for r in rows}
    ratio, lo, hi = (float(metrics[m]["value"]) for m in
                     ("speedup_vs_fastest_sklearn", "speedup_min", "speedup_max"))
    assert 0 < lo <= ratio <= hi
    assert metrics["speedup_vs_fastest_sklearn"]["met"] in ("True", "False")
    for who in ("mlp_core", "sklearn"):
        assert float(metrics[f"{who} epoch_s"]["value"]) > 0
        assert 0 < float(metrics[f"{who} test_acc"]["value"]) <= 1
    assert "the median of 1 ratios" in (out / "bench.md").read_text()


def test_gpu_bench_says_so_without_a_cuda_device(tmp_path, capsys):
    import torch

    from experiments.benchmarks import gpu

    if torch.cuda.is_available():  # the GPU run itself is timed by hand, not by a unit test
        assert gpu.GPU_CASES[-1].batch == 4096
        return
    assert gpu.main(["--out", str(tmp_path / "gpu")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "gpu").exists()
