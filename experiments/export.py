"""Open runs in the trackers people already use: write them to MLflow or TensorBoard.

    python experiments/export.py --to mlflow                 # newest sweep -> sqlite:///outputs/mlflow.db
    python experiments/export.py --to tensorboard outputs/sweeps/<sweep>   # -> outputs/tensorboard/
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXAMPLES = """examples:
  python experiments/export.py --to mlflow                       # the newest sweep
  mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db      # then open http://127.0.0.1:5000
  python experiments/export.py --to mlflow --uri http://127.0.0.1:5000 outputs/sweeps/a
  python experiments/export.py --to tensorboard outputs/sweeps   # every sweep
  tensorboard --logdir outputs/tensorboard                       # the HParams tab compares runs

Each run dir becomes one tracker run: params = the config (flattened: optim.lr), metrics per
epoch (step = epoch) and per layer (layers/<i>_<name>/<stat>), tags (status, git, sweep, notes,
tags), artifacts (summary.json, config.yaml, run.log, the sweep's compare/report.html).
Exporting again adds nothing; a run whose record changed since (resumed, finished) is rewritten.
Needs the optional extra: pip install -c constraints.txt -e ".[trackers]"

exit status: 0 done, 2 no runs found / bad option / tracker not installed."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="export.py", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help="sweep dirs, run dirs or parents of them (default: the newest sweep "
                        "under outputs/sweeps, else outputs/runs)")
    p.add_argument("--to", required=True, choices=("mlflow", "tensorboard"), help="the tracker")
    p.add_argument("--uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                 "sqlite:///outputs/mlflow.db)")
    p.add_argument("--logdir", type=Path, help="TensorBoard log dir (default: outputs/tensorboard)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from experiments.compare import newest_sweep  # the same "newest sweep" as compare.py
    from experiments.trackers.source import find_run_dirs, read_run

    paths = list(args.paths)
    if not paths:
        try:
            paths, note = newest_sweep(Path("outputs"))
        except Exception as e:  # compare's UsageError: nothing under outputs/
            print(f"export.py: {e}", file=sys.stderr)
            return 2
        print(f"export.py: {note}")
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"export.py: no such file or directory: {', '.join(map(str, missing))}",
              file=sys.stderr)
        return 2
    dirs = find_run_dirs(paths)
    if not dirs:
        print(f"export.py: no runs under {', '.join(map(str, paths))} "
              "(looked for summary.json / metrics.csv)", file=sys.stderr)
        return 2
    recs = [read_run(d) for d in dirs]
    try:
        if args.to == "mlflow":
            from experiments.trackers import mlflow_export as tracker
        else:
            from experiments.trackers import tensorboard_export as tracker  # type: ignore[no-redef]
    except ImportError as e:
        print(f"export.py: {args.to} is not installed ({e.name}): "
              'pip install -c constraints.txt -e ".[trackers]"', file=sys.stderr)
        return 2
    if args.to == "mlflow":
        uri = args.uri or os.environ.get("MLFLOW_TRACKING_URI") or tracker.DEFAULT_URI
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        counts = tracker.export_runs(recs, uri)
        where = uri
        see = f"open {uri}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}"
    else:
        logdir = args.logdir or Path(tracker.DEFAULT_LOGDIR)
        counts = tracker.export_runs(recs, logdir)
        where, see = str(logdir), f"tensorboard --logdir {logdir}"
    experiments = sorted({r.experiment for r in recs})
    print(f"{len(recs)} run{'s' * (len(recs) != 1)} of {', '.join(experiments)} -> {where}: "
          f"{counts['added']} added, {counts['updated']} updated, "
          f"{counts['unchanged']} unchanged")
    print(f"see: {see}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
