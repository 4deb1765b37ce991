"""The study as a user would write it without the harness: torch.nn + autograd + torch.optim.

    python experiments/benchmarks/plain_study.py activation=relu,sigmoid seed=0,1,2,3 epochs=30
    python experiments/benchmarks/plain_study.py depth=6 batchnorm=true ...
    python experiments/benchmarks/plain_study.py width=1024 device=cuda ...

The same runs as `experiments/run.py -m ... data=digits optim=sgd optim.lr=0.05`: the same data
splits (digits, data.seed 0, standardized on the training split), the same net (`depth` x
`width` Linear -> BatchNorm? -> activation, He-normal init, zero biases), SGD with momentum 0.9,
batch 64 (the incomplete last batch dropped with BatchNorm), reshuffled every epoch, one thread.
Each epoch ends with one evaluation on the validation split; nothing is logged or written.
Prints one JSON line per run (final val accuracy, wall seconds) and the total.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

from mlp_core.data import load_dataset

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
DEFAULTS = {"activation": "relu", "seed": "0", "depth": "2", "width": "64", "batchnorm": "false",
            "epochs": "30", "batch_size": "64", "lr": "0.05", "momentum": "0.9", "threads": "1",
            "device": "cpu"}


def make_net(in_dim: int, out_dim: int, depth: int, width: int, activation: str,
             batchnorm: bool, seed: int) -> nn.Sequential:
    """Linear -> BatchNorm? -> activation blocks and a Linear head, He-normal weights."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    dims = [in_dim] + [width] * depth
    for fan_in, fan_out in itertools.pairwise(dims):
        layers.append(nn.Linear(fan_in, fan_out))
        if batchnorm:
            layers.append(nn.BatchNorm1d(fan_out))
        layers.append(ACTIVATIONS[activation]())
    layers.append(nn.Linear(dims[-1], out_dim))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def run_one(data, activation: str, seed: int, depth: int, width: int, batchnorm: bool,
            epochs: int, batch_size: int, lr: float, momentum: float) -> dict:
    """Train one net; evaluate on the validation split after every epoch."""
    t0 = time.perf_counter()
    net = make_net(data.in_dim, data.out_dim, depth, width, activation, batchnorm, seed)
    net = net.to(data.X_train.device)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    X, y = data.X_train, data.y_train
    n = len(X)
    stop = n - n % batch_size if batchnorm else n
    g = torch.Generator().manual_seed(seed)
    val_acc = float("nan")
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(n, generator=g).to(X.device)
        Xs, ys = X[perm], y[perm]
        for i in range(0, stop, batch_size):
            opt.zero_grad()
            loss = loss_fn(net(Xs[i:i + batch_size]), ys[i:i + batch_size])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_acc = float((net(data.X_val).argmax(1) == data.y_val).float().mean())
    return {"activation": activation, "seed": seed, "val_acc": val_acc,
            "wall_s": time.perf_counter() - t0}


def parse(argv: Sequence[str]) -> dict[str, list[str]]:
    """key=v1,v2 arguments (the run.py sweep syntax) over DEFAULTS."""
    out = {k: [v] for k, v in DEFAULTS.items()}
    for a in argv:
        key, sep, values = a.partition("=")
        if not sep or key not in DEFAULTS:
            raise SystemExit(f"error: expected key=value with key in {', '.join(DEFAULTS)}, got {a!r}")
        out[key] = values.split(",")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    t0 = time.perf_counter()
    a = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(int(a["threads"][0]))
    # once: every run of the study uses the same splits
    data = load_dataset("digits", seed=0, device=a["device"][0])
    one = {k: v[0] for k, v in a.items() if k not in ("activation", "seed")}
    for act, seed in itertools.product(a["activation"], a["seed"]):
        r = run_one(data, act, int(seed), int(one["depth"]), int(one["width"]),
                    one["batchnorm"].lower() == "true", int(one["epochs"]),
                    int(one["batch_size"]), float(one["lr"]), float(one["momentum"]))
        print(json.dumps(r), flush=True)
    print(json.dumps({"total_s": time.perf_counter() - t0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
