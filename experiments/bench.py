"""Measure mlp_core against its peers and write outputs/bench/<timestamp>/bench.csv.

    python experiments/bench.py                      # everything, ~6 min (make bench)
    python experiments/bench.py --quick              # smaller and fewer repeats (~1 min)
    python experiments/bench.py --only study,step    # some sections: study, step, sklearn, sweep,
                                                     # compare
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from experiments.benchmarks import machine, peers, step, study, sweep
from experiments.benchmarks.compare_cost import bench_compare as compare_cost
from experiments.paths import OUTPUTS

SECTIONS = ("study", "step", "sklearn", "sweep", "compare")
COLUMNS = ["section", "case", "metric", "value", "unit", "target", "met"]


class Results:
    """Rows of bench.csv (one measured number each) and the markdown tables printed on the way."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.tables: list[str] = []

    def add(self, section: str, case: str, metric: str, value: float, unit: str,
            target: str = "", met: bool | None = None) -> None:
        self.rows.append({"section": section, "case": case, "metric": metric, "value": value,
                          "unit": unit, "target": target, "met": "" if met is None else met})

    def table(self, title: str, header: list[str], lines: list[list[str]], note: str = "") -> None:
        md = [f"**{title}**", "", "| " + " | ".join(header) + " |",
              "|" + "|".join("---" for _ in header) + "|"]
        md += ["| " + " | ".join(cells) + " |" for cells in lines]
        if note:
            md += ["", note]
        self.tables.append("\n".join(md))
        print("\n" + self.tables[-1], flush=True)


def check(value: float, op: str, bound: float) -> tuple[str, bool]:
    """('<= 0.75', True) style target text and verdict."""
    return f"{op} {bound:g}", (value <= bound if op == "<=" else value >= bound)


def mark(met: bool) -> str:
    """Verdict cell text."""
    return "met" if met else "**missed**"


def bench_study(res: Results, quick: bool, epochs: int | None, pairs: int | None,
                keys: Sequence[str]) -> None:
    """Each study through run.py against plain_study.py, alternated; ratio and breakdown."""
    epochs = epochs or (2 if quick else 30)
    pairs = pairs or (1 if quick else 3)
    lines, parts_lines, results = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(x for x in study.STUDIES if x.key in keys):
            r = study.measure(s, Path(tmp) / f"study{i}", epochs, pairs, quick)
            results.append(r)
            case = r["study"].name
            target, met = check(r["ratio"], "<=", s.target)
            res.add("study", case, "ratio", r["ratio"], "harness/plain (median)", target, met)
            res.add("study", case, "ratio_min", r["ratio_min"], "harness/plain")
            res.add("study", case, "ratio_max", r["ratio_max"], "harness/plain")
            res.add("study", case, "harness_s", r["harness_s"], "s (median, whole process)")
            res.add("study", case, "plain_s", r["plain_s"], "s (median, whole process)")
            res.add("study", case, "harness_val_acc", r["harness_acc"], f"mean over {r['runs']} runs")
            res.add("study", case, "plain_val_acc", r["plain_acc"], f"mean over {r['runs']} runs")
            res.add("study", case, "records_complete", float(r["complete"]),
                    "1 = every run completed with metrics.csv, layers.csv, checkpoint.pt",
                    "== 1", r["complete"])
            for part, sec in r["parts"].items():
                res.add("study", case, f"phase_{part}_s", sec, "s (median over pairs, all runs)")
            lines.append([case, str(r["runs"]), f"{r['harness_s']:.1f}", f"{r['plain_s']:.1f}",
                          f"{r['ratio']:.2f}", f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}",
                          f"{target} {mark(met)}", f"{r['harness_acc']:.3f} / {r['plain_acc']:.3f}"])
        for part in study.PARTS:
            cells = [study.PART_LABELS[part]]
            for r in results:
                sec, total = r["parts"][part], r["harness_s"]
                cells.append(f"{sec:.2f} ({100 * sec / total:.0f}%)")
            parts_lines.append(cells)
    r0 = results[0]
    res.table(
        f"Study through the harness vs the plain torch.nn script: {pairs} alternated pair(s) of "
        f"whole processes, {epochs} epochs, `{study.STUDIES[0].command(epochs)}` (BatchNorm "
        f"study: plus `{' '.join(study.STUDIES[1].fixed)}`)",
        ["study", "runs", "harness s", "plain s", "ratio (median)", "min–max", "target",
         "val acc harness / plain"], lines,
        f"Harness with default settings (threads={','.join(map(str, r0['threads']))} per run "
        f"from threads=auto, gradient check, metrics.csv, layers.csv, checkpoints); plain: "
        f"experiments/benchmarks/plain_study.py (torch.nn + autograd + torch.optim, 1 thread, one "
        f"val evaluation per epoch, nothing written).")
    res.table(
        "Where the harness's time goes (seconds, median over pairs, summed over the study's runs; "
        "share of the whole process)",
        ["part", *(r["study"].name for r in results)], parts_lines,
        "start-up: `run.py --cfg job` (best of 2); Hydra per job: the process's wall time less "
        "start-up and the runs' wall_time_s; the rest from each run's summary.json `phases_s`.")


def bench_step(res: Results, quick: bool) -> None:
    """Train-step µs of mlp_core vs autograd per case, GFLOP/s and share of torch.mm's peak."""
    sizes, reps = ((512, 1024), 2) if quick else ((256, 512, 1024, 2048), 5)
    peak, peak_n = step.gemm_peak(sizes, reps)
    timed = [step.time_case(case, repeats=3 if quick else 9, chunk_s=0.03 if quick else 0.1)
             for case in step.CASES]
    peak, peak_n = max((peak, peak_n), step.gemm_peak(sizes, reps))  # best of before and after
    res.add("step", f"torch.mm {peak_n}x{peak_n}", "gemm_peak", peak, "GFLOP/s")
    limits = {0: 0.6, 1: 0.75}
    lines = []
    for i, (case, r) in enumerate(zip(step.CASES, timed, strict=True)):
        ours_gf = case.flops / r["mlp_core_us"] / 1e3
        auto_gf = case.flops / r["autograd_us"] / 1e3
        target, met = check(r["ratio"], "<=", limits.get(i, 1.0))
        res.add("step", case.label, "mlp_core_us", r["mlp_core_us"], "us/step")
        res.add("step", case.label, "autograd_us", r["autograd_us"], "us/step")
        res.add("step", case.label, "ratio", r["ratio"], "mlp_core/autograd", target, met)
        res.add("step", case.label, "ratio_min", r["ratio_min"], "mlp_core/autograd, one pair")
        res.add("step", case.label, "ratio_max", r["ratio_max"], "mlp_core/autograd, one pair")
        res.add("step", case.label, "mlp_core_gflops", ours_gf, "GFLOP/s")
        res.add("step", case.label, "autograd_gflops", auto_gf, "GFLOP/s")
        share_target, share_met = "", None
        if i == len(step.CASES) - 1:
            share_target, share_met = check(ours_gf / peak, ">=", 0.85)
        res.add("step", case.label, "peak_share", ours_gf / peak, "fraction", share_target, share_met)
        executed = case.flops_executed / r["mlp_core_us"] / 1e3 / peak
        res.add("step", case.label, "peak_share_executed", executed, "fraction (FLOPs executed)")
        res.add("step", case.label, "max_param_diff", r["max_param_diff"], "abs, after 3 steps")
        share = f"{100 * ours_gf / peak:.0f}%" + (f" ({mark(share_met)})" if share_met is not None else "")
        lines.append([case.label, f"{r['mlp_core_us']:,.0f}", f"{r['autograd_us']:,.0f}",
                      f"{r['ratio']:.3f}", f"{r['ratio_min']:.3f}–{r['ratio_max']:.3f}",
                      f"{target} {mark(met)}", f"{ours_gf:.1f}",
                      f"{auto_gf:.1f}", share, f"{100 * executed:.0f}%", f"{r['max_param_diff']:.0e}"])
    res.table(
        f"Train step (forward, loss, backward, SGD momentum 0.9), {torch.get_num_threads()} torch "
        f"threads; GEMM peak {peak:.0f} GFLOP/s (torch.mm {peak_n}²)",
        ["network, batch", "mlp_core µs", "autograd µs", "ratio", "min–max", "target",
         "mlp_core GFLOP/s",
         "autograd GFLOP/s", "% of GEMM peak", "% executed", "max Δparam"],
        lines,
        "Median of alternating timed chunks; min–max: the ratio of one chunk of each, timed back "
        "to back, over the repeats (a range across 1 is a tie). mlp_core: the Trainer's step "
        "(mlp_core.step.TrainStep) inside inference_mode; autograd as usual. "
        "GFLOP/s counts 6·B·Σ fan_in·fan_out per step; neither implementation computes the input's "
        "gradient, so the FLOPs executed are 2·B·fan_in·fan_out of the first layer fewer (% executed "
        "uses those). max Δparam: both trained 3 steps from the same init on the same batches.")


def bench_sklearn(res: Results, quick: bool, epochs: int, lr: float) -> None:
    """Per-epoch time and test accuracy on digits, alternated run by run: for each seed,
    mlp_core, then each sklearn variant (a child process each, started once: both BLAS
    kernels, OpenBLAS's default threads and one), in rounds over the seeds. The peer is the
    variant fastest by its median; each group's ratio is that variant's epoch time over
    mlp_core's, reported as the median over the groups and its min–max. One untimed run of
    each comes first."""
    seeds = (0,) if quick else tuple(range(5))
    rounds = 1 if quick else 2
    kernels = {"sklearn": (False, False)} if quick else {
        "sklearn": (False, False), "sklearn, 1 BLAS thread": (False, True),
        "sklearn, own BLAS kernel": (True, False)}
    runs: dict[str, list[dict[str, Any]]] = {"mlp_core": [], **{k: [] for k in kernels}}
    with contextlib.ExitStack() as stack:
        children = {name: stack.enter_context(peers.SklearnChild(own, one))
                    for name, (own, one) in kernels.items()}
        # one run of each first, not counted: a process's first run pays for MKL's and
        # OpenBLAS's set-up and the first allocations (it took ~2.5x a later one's time)
        peers.run_mlp_core(epochs, lr, seeds[0])
        for c in children.values():
            c.fit(epochs, lr, seeds[0])
        for _ in range(rounds):
            for seed in seeds:  # the VM's speed drifts over minutes: compare runs seconds apart
                runs["mlp_core"].append(peers.run_mlp_core(epochs, lr, seed))
                for name, c in children.items():
                    runs[name].append(c.fit(epochs, lr, seed))
    out = {name: {"epoch_s": statistics.median(r["epoch_s"] for r in rs),
                  # every seed once per round: the mean over seeds is unchanged
                  "test_acc": statistics.mean(r["test_acc"] for r in rs), "info": rs[0]}
           for name, rs in runs.items()}
    ours = out["mlp_core"]
    ours["info"]["epoch_with_metrics_s"] = statistics.median(
        r["epoch_with_metrics_s"] for r in runs["mlp_core"])
    best = min((k for k in out if k != "mlp_core"), key=lambda k: out[k]["epoch_s"])
    sk_best = out[best]
    ratios = [a["epoch_s"] / b["epoch_s"] for a, b in zip(runs[best], runs["mlp_core"],
                                                         strict=True)]
    lines = []
    case = f"digits [128,128] {epochs} epochs"
    for name, v in out.items():
        res.add("sklearn", case, f"{name} epoch_s", v["epoch_s"], "s/epoch")
        res.add("sklearn", case, f"{name} test_acc", v["test_acc"], f"mean over {len(seeds)} seeds")
        info = v["info"]
        detail = f"MKL, {info['threads']} torch threads" if name == "mlp_core" else info["blas"]
        lines.append([name, f"{1e3 * v['epoch_s']:.2f}", f"{v['test_acc']:.4f}", detail])
    speedup = statistics.median(ratios)
    target, met = check(speedup, ">=", 2.0)
    acc_ok = ours["test_acc"] >= sk_best["test_acc"]
    res.add("sklearn", case, "speedup_vs_fastest_sklearn", speedup, "x", target, met)
    res.add("sklearn", case, "speedup_min", min(ratios), "x (over seed groups)")
    res.add("sklearn", case, "speedup_max", max(ratios), "x (over seed groups)")
    res.add("sklearn", case, "acc_minus_sklearn", ours["test_acc"] - sk_best["test_acc"],
            "test acc", ">= 0", acc_ok)
    spread = ", ".join(f"{r:.2f}" for r in ratios)
    res.table(
        f"vs scikit-learn MLPClassifier on digits: [128, 128] ReLU, SGD lr {lr} momentum 0.9, "
        f"batch 64, {epochs} epochs, float32, init U(±√(6/(fan_in+fan_out))) like sklearn's, seeds "
        f"{list(seeds)} (each its own data split)",
        ["implementation", "ms / epoch (median)", "test acc (mean)", "BLAS, threads"], lines,
        f"mlp_core is {speedup:.2f}x faster per epoch than the fastest sklearn (the median of "
        f"{len(ratios)} ratios: {spread}; min–max {min(ratios):.2f}–{max(ratios):.2f}; "
        f"{target}: {mark(met)}); test accuracy {'equal or better' if acc_ok else 'lower'} "
        f"({mark(acc_ok)}). Each ratio compares runs of one seed back to back: mlp_core's, then "
        f"each sklearn variant's ({best!r}'s), {rounds} round(s) over the seeds. "
        f"mlp_core runs with the torch threads the "
        f"harness's threads=auto gives this net. mlp_core's time is the Trainer's "
        f"training loop; with its per-epoch metrics (train/val evaluation, layer statistics) an "
        f"epoch takes {1e3 * ours['info']['epoch_with_metrics_s']:.2f} ms.")


def bench_sweep(res: Results, quick: bool, epochs: int | None) -> None:
    """8 runs via run.py -m, sequential vs joblib with 2 workers; Hydra's overhead per job."""
    epochs = epochs or (5 if quick else 400)
    with tempfile.TemporaryDirectory() as tmp:
        r = sweep.compare_launchers(Path(tmp), epochs, n_jobs=2)
    target, met = check(r["speedup"], ">=", 1.7)
    seq, par = r["sequential"], r["joblib"]
    case = f"8 runs digits 3x256 {epochs} epochs"
    for mode, v in (("sequential", seq), ("joblib2", par)):
        res.add("sweep", case, f"{mode} total_s", v["total_s"], "s")
        res.add("sweep", case, f"{mode} run_wall_mean_s", v["run_wall_mean_s"], "s")
    res.add("sweep", case, "startup_s", r["startup_s"], "s (run.py --cfg job)")
    res.add("sweep", case, "hydra_per_job_s", r["hydra_per_job_s"], "s (sequential)")
    res.add("sweep", case, "speedup", r["speedup"], "x", target, met)
    res.table(
        f"Sweep throughput: `{seq['command']}`, basic launcher vs `hydra/launcher=joblib "
        f"hydra.launcher.n_jobs=2`",
        ["launcher", "total s", "mean run wall_time_s", "runs completed"],
        [[m, f"{v['total_s']:.1f}", f"{v['run_wall_mean_s']:.2f}", f"{v['completed']}/{v['runs']}"]
         for m, v in (("basic (sequential)", seq), ("joblib, 2 workers", par))],
        f"Speedup {r['speedup']:.3f}x ({target}: {mark(met)}). Hydra's own cost is "
        f"{r['hydra_per_job_s']:.2f} s per job (launching, composing, run dir) plus "
        f"{r['startup_s']:.1f} s once (interpreter, imports, config), next to "
        f"{seq['run_wall_mean_s']:.2f} s per run in summary.json's wall_time_s (gradcheck, "
        f"epochs, metrics and checkpoints).")


def bench_compare(res: Results, quick: bool) -> None:
    """compare.py on a generated sweep tree: load + aggregate, then plots + report."""
    n_runs, n_epochs = (100, 50) if quick else (1000, 50)
    s = compare_cost(n_runs, n_epochs)
    case = f"{n_runs} runs x {n_epochs} epochs"
    for key in ("generate", "load_aggregate", "plot_write", "total"):
        res.add("compare", case, key, s[key], "s")
    res.table(f"compare.py on a generated tree of {case} (experiments/benchmarks/compare_cost.py)",
              ["load + aggregate s", "plots + report s", "compare total s", "(generating the tree s)"],
              [[f"{s['load_aggregate']:.2f}", f"{s['plot_write']:.2f}", f"{s['total']:.2f}",
                f"{s['generate']:.1f}"]])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller workloads")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads for the step and scikit-learn sections (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="digits epochs (default 30, quick 10)")
    p.add_argument("--lr", type=float, default=0.01, help="digits learning rate (default %(default)s)")
    p.add_argument("--sweep-epochs", type=int, default=None,
                   help="epochs of each sweep run (default 400, quick 5)")
    p.add_argument("--study-epochs", type=int, default=None,
                   help="epochs of each study run (default 30, quick 2)")
    p.add_argument("--studies", default=",".join(s.key for s in study.STUDIES),
                   help="comma-separated studies of the study section (default: %(default)s)")
    p.add_argument("--study-pairs", type=int, default=None,
                   help="alternated harness/plain pairs per study (default 3, quick 1)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each section, wait up to SECONDS for other processes to leave "
                        "the cores idle (on a shared machine)")
    p.add_argument("--out", type=Path, default=None,
                   help="output dir (default: outputs/bench/<timestamp>)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in SECTIONS]
    if bad or not args.only:
        p.error(f"--only: unknown section(s) {bad}; allowed: {', '.join(SECTIONS)}")
    args.studies = [s.strip() for s in args.studies.split(",") if s.strip()]
    keys = [s.key for s in study.STUDIES]
    if not args.studies or any(s not in keys for s in args.studies):
        p.error(f"--studies: unknown study in {args.studies}; allowed: {', '.join(keys)}")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or OUTPUTS / "bench" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    info = machine.machine_info()
    print(f"machine: {machine.describe(info)}", flush=True)
    res = Results()
    epochs = args.epochs or (10 if args.quick else 30)
    t0 = time.perf_counter()
    runners: dict[str, Callable[[], None]] = {
        "study": lambda: bench_study(res, args.quick, args.study_epochs, args.study_pairs,
                                     args.studies),
        "step": lambda: bench_step(res, args.quick),
        "sklearn": lambda: bench_sklearn(res, args.quick, epochs, args.lr),
        "sweep": lambda: bench_sweep(res, args.quick, args.sweep_epochs),
        "compare": lambda: bench_compare(res, args.quick),
    }
    for name in SECTIONS:
        if name in args.only:
            if args.wait_quiet > 0:
                share = machine.wait_quiet(args.wait_quiet)
                if share is not None and share >= 0.05:
                    print(f"machine still busy ({100 * share:.0f}% of the cores) after waiting "
                          f"{args.wait_quiet:g} s; measuring {name} anyway", flush=True)
            with machine.Contention() as busy:
                runners[name]()
            if busy.other_share is not None:
                res.add(name, "machine", "other_cpu_share", busy.other_share,
                        "of all cores, used by other processes")
                info[f"other_cpu_share_{name}"] = round(busy.other_share, 3)
                if busy.other_share > 0.1:
                    print(f"warning: other processes used {100 * busy.other_share:.0f}% of the "
                          f"cores during the {name} section: its timings are unreliable", flush=True)
    info["load_avg_1min_end"] = machine.load_average()
    info["bench_seconds"] = round(time.perf_counter() - t0, 1)
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(res.rows)
    (out / "machine.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "bench.md").write_text(f"Machine: {machine.describe(info)}.\n\n"
                                  + "\n\n".join(res.tables) + "\n")
    missed = [r for r in res.rows if r["met"] is False]
    print(f"\n{len(res.rows)} numbers in {out / 'bench.csv'} ({info['bench_seconds']} s); "
          f"targets missed: {len(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
