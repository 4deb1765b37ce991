"""`make demo`: a small real sweep (activation x init x seed on digits), its comparison, and where.

Six hidden layers with SGD: ReLU trains and sigmoid does not, which the report shows and explains
(signal propagation, saturation per layer), in about ten seconds on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
import time

from experiments.paths import COMPARE_PY, OUTPUTS, REPO, RUN_PY

SWEEP = ["activation=relu,sigmoid", "init=he,xavier", "seed=0,1", "data=digits", "depth=6",
         "optim=sgd", "optim.lr=0.05", "epochs=15"]


def main() -> int:
    sweep_dir = OUTPUTS / "sweeps" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_demo"
    cmd = [sys.executable, str(RUN_PY), "-m", *SWEEP,
           f"hydra.sweep.dir={sweep_dir}"]
    print("$", " ".join(cmd[1:]), flush=True)
    rc = subprocess.call(cmd, cwd=REPO)
    print("$", "python experiments/compare.py", sweep_dir, flush=True)
    rc = subprocess.call([sys.executable, str(COMPARE_PY), str(sweep_dir)], cwd=REPO) or rc
    print(f"\nsweep:  {sweep_dir}  (one folder per run: metrics.csv, layers.csv, summary.json)")
    report = sweep_dir / "compare" / "report.html"
    if report.exists():
        print(f"report: {report}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
