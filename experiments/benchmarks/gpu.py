"""GPU figures on a CUDA device: the train step against autograd, and the study at width 1024.

    python experiments/benchmarks/gpu.py --out DIR            # ~3 minutes on one GPU
    python experiments/benchmarks/gpu.py --pairs 1 --epochs 5 # a quick look

Train step: mlp_core (inside inference_mode) against torch.nn + autograd + torch.optim.SGD on the
same device, the same init and batches, float32, median of alternating chunks (the clock stops
after torch.cuda.synchronize()). Study: `run.py -m activation=relu,sigmoid seed=0,1,2,3
data=digits optim=sgd optim.lr=0.05 width=1024 device=cuda` against plain_study.py with the
same settings, whole processes alternated. Absolute times are quoted from the GPU only; writes
gpu.csv (one number a row) and gpu.md (the tables) to --out.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import torch

from experiments.benchmarks.step import CASES, Case, time_case
from experiments.benchmarks.study import Study, measure

GPU_CASES = (*CASES[1:], Case(1024, (1024, 1024, 1024), 10, 4096))
STUDY = Study("gpu1024", "digits 2×1024 on the GPU, ReLU/sigmoid × 4 seeds",
              ("activation=relu,sigmoid", "seed=0,1,2,3"), ("width=1024", "device=cuda"), 1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/gpu"))
    ap.add_argument("--work", type=Path, default=None,
                    help="where the study's sweeps are written (default: OUT/study)")
    ap.add_argument("--pairs", type=int, default=2, help="harness/plain pairs of the study")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of each study run")
    ap.add_argument("--repeats", type=int, default=9, help="alternating chunks per step case")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    card = torch.cuda.get_device_name(0)
    rows: list[dict[str, object]] = []
    md = [f"GPU: **{card}**, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}", "",
          "| network, batch | mlp_core µs | autograd µs | ratio | GFLOP/s mlp_core | max Δparam |",
          "|---|---|---|---|---|---|"]
    for case in GPU_CASES:
        r = time_case(case, repeats=a.repeats, chunk_s=0.2, device="cuda")
        gflops = case.flops / r["mlp_core_us"] / 1e3
        md.append(f"| {case.label} | {r['mlp_core_us']:,.0f} | {r['autograd_us']:,.0f} | "
                  f"{r['ratio']:.3f} | {gflops:,.0f} | {r['max_param_diff']:.0e} |")
        for k, v in r.items():
            rows.append({"section": "gpu_step", "case": case.label, "metric": k, "value": v})
        print(md[-1], flush=True)
    if a.pairs > 0:
        res = measure(STUDY, a.work or a.out / "study", a.epochs, a.pairs)
        md += ["", f"Study `{STUDY.command(a.epochs)}` ({res['runs']} runs) against "
               f"plain_study.py, {a.pairs} alternated pairs:", "",
               "| harness s (median) | plain s (median) | ratio (median) | min–max | "
               "val acc harness / plain | runs complete |", "|---|---|---|---|---|---|",
               f"| {res['harness_s']:.1f} | {res['plain_s']:.1f} | {res['ratio']:.2f} | "
               f"{res['ratio_min']:.2f}–{res['ratio_max']:.2f} | {res['harness_acc']:.3f} / "
               f"{res['plain_acc']:.3f} | {res['complete']} |", "",
               "Harness breakdown (s, median): " + ", ".join(
                   f"{k} {v:.2f}" for k, v in res["parts"].items())]
        for k in ("harness_s", "plain_s", "ratio", "ratio_min", "ratio_max"):
            rows.append({"section": "gpu_study", "case": STUDY.key, "metric": k, "value": res[k]})
        for k, v in res["parts"].items():
            rows.append({"section": "gpu_study", "case": STUDY.key, "metric": f"part_{k}",
                         "value": v})
        print("\n".join(md[-7:]), flush=True)
    with (a.out / "gpu.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["section", "case", "metric", "value"])
        w.writeheader()
        w.writerows(rows)
    (a.out / "gpu.md").write_text("\n".join(md) + "\n")
    ratios = [float(str(r["value"])) for r in rows
              if r["section"] == "gpu_step" and r["metric"] == "ratio"]
    print(f"step ratios mlp_core / autograd: median {statistics.median(ratios):.3f}; "
          f"wrote {a.out / 'gpu.csv'} and gpu.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
