"""The MNIST-1D authors' MLP training, re-typed in plain torch: the reference for mnist1d_paper_mlp.

Greydanus (2020), github.com/greydanus/mnist1d `notebooks/train.py` + `models.py` with the
paper's arguments: 40 -> 100 -> 100 -> 10 ReLU (torch.nn.Linear's default init), Adam lr 1e-2,
no weight decay, batch 100 taken in order (`bix = step * 100 % 4000`, no shuffling),
`total_steps + 1` steps (6001 for 6000), test accuracy of the final model on the canonical
1000 test samples; `torch.manual_seed(seed)` before the model is built. `--residual` adds the
skip connection of the repository's current MLPBase (`h = h + relu(linear2(h))`).
`--shuffle` reshuffles the training set every 4000 samples and `--zero-bias` starts the biases
at 0: the two things the harness does differently.

    python -m experiments.benchmarks.mnist1d_authors --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from mlp_core.data import load_dataset


def train_once(seed: int, steps: int = 6000, hidden: int = 100, lr: float = 1e-2,
               batch_size: int = 100, residual: bool = False, shuffle: bool = False,
               zero_bias: bool = False) -> float:
    """Final test accuracy of one run of the authors' loop."""
    d = load_dataset("mnist1d", val_frac=0.0)  # the package's canonical set, row for row
    torch.manual_seed(seed)
    l1, l2, l3 = (torch.nn.Linear(40, hidden), torch.nn.Linear(hidden, hidden),
                  torch.nn.Linear(hidden, 10))

    def model(x: torch.Tensor) -> torch.Tensor:
        h = l1(x).relu()
        h = h + l2(h).relu() if residual else l2(h).relu()
        return l3(h)

    params = [p for m in (l1, l2, l3) for p in m.parameters()]
    if zero_bias:
        with torch.no_grad():
            for m in (l1, l2, l3):
                m.bias.zero_()
    opt = torch.optim.Adam(params, lr)
    x, y = d.X_train, d.y_train
    order = torch.Generator().manual_seed(seed)
    for step in range(steps + 1):
        bix = step * batch_size % len(x)
        if shuffle and bix == 0:
            perm = torch.randperm(len(d.X_train), generator=order)
            x, y = d.X_train[perm], d.y_train[perm]
        loss = torch.nn.functional.cross_entropy(model(x[bix:bix + batch_size]),
                                                 y[bix:bix + batch_size])
        loss.backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        return float((model(d.X_test).argmax(1) == d.y_test).double().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--residual", action="store_true")
    p.add_argument("--shuffle", action="store_true")
    p.add_argument("--zero-bias", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    accs = [train_once(s, args.steps, residual=args.residual, shuffle=args.shuffle,
                       zero_bias=args.zero_bias) for s in args.seeds]
    print(json.dumps({"seeds": args.seeds, "test_acc": accs, "mean": statistics.mean(accs),
                      "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}))


if __name__ == "__main__":
    main()
