"""Train-step time of mlp_core against the same network in torch.nn + autograd + torch.optim."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlp_core.model import MLPClassifier
from mlp_core.optim import SGD
from mlp_core.step import TrainStep

LR, MOMENTUM = 0.01, 0.9


@dataclass(frozen=True)
class Case:
    """One network [in -> hidden... -> out] trained on batches of `batch` samples."""

    in_dim: int
    hidden: tuple[int, ...]
    out_dim: int
    batch: int

    @property
    def dims(self) -> list[int]:
        return [self.in_dim, *self.hidden, self.out_dim]

    @property
    def label(self) -> str:
        h = self.hidden
        mid = f"{h[0]}×{len(h)}" if len(h) > 2 and len(set(h)) == 1 else "→".join(map(str, h))
        return f"[{self.in_dim}→{mid}→{self.out_dim}] B={self.batch}"

    @property
    def flops(self) -> int:
        """The usual count, 2 FLOPs per multiply-add x (1 forward + 2 backward GEMMs) per layer:
        6 B sum(fan_in fan_out)."""
        d = self.dims
        return 6 * self.batch * sum(a * b for a, b in zip(d, d[1:], strict=False))

    @property
    def flops_executed(self) -> int:
        """What both implementations actually run: no gradient for the input batch, so the first
        layer has one backward GEMM, not two."""
        return self.flops - 2 * self.batch * self.dims[0] * self.dims[1]


CASES = (
    Case(2, (32,), 3, 64),
    Case(64, (128, 128), 10, 128),
    Case(40, (256, 256, 256), 10, 256),
    Case(784, (512, 512), 10, 256),
    Case(1024, (1024, 1024, 1024), 10, 512),
)


def gemm_peak(sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 5) -> tuple[float, int]:
    """Best GFLOP/s of torch.mm on square float32 matrices (into a reused output): (peak, n)."""
    best, best_n = 0.0, sizes[0]
    for n in sizes:
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        reps = max(2, int(2e9 / (2 * n**3)))  # ~0.01 s of work per timing
        torch.mm(a, b, out=c)
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=c)
            gflops = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
            if gflops > best:
                best, best_n = gflops, n
    return best, best_n


def make_pair(case: Case, seed: int = 0, device: str = "cpu"
              ) -> tuple[Callable, Callable, Callable[[], float]]:
    """(mlp_core step, autograd step, check) on one shared stream of batches, from the same init.

    Each step takes the next of 4 fixed batches. check() runs 3 fresh steps of both from the
    same params and returns the largest |difference| of any parameter afterwards.
    """
    gen = torch.Generator().manual_seed(seed)
    data = [(torch.randn(case.batch, case.in_dim, generator=gen).to(device),
             torch.randint(0, case.out_dim, (case.batch,), generator=gen).to(device))
            for _ in range(4)]

    def build() -> tuple[MLPClassifier, SGD, torch.nn.Sequential, torch.optim.SGD]:
        model = MLPClassifier(case.in_dim, case.out_dim, list(case.hidden), seed=seed,
                              device=device)
        layers: list[torch.nn.Module] = []
        for i in range(len(case.hidden) + 1):
            W, b = model.params[f"fc{i}.W"], model.params[f"fc{i}.b"]
            lin = torch.nn.Linear(*W.shape)
            with torch.no_grad():
                lin.weight.copy_(W.t())  # nn.Linear keeps (out, in); we keep (in, out)
                lin.bias.copy_(b)
            layers += [lin, torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers[:-1]).to(device)
        return (model, SGD(model.params, lr=LR, momentum=MOMENTUM), net,
                torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM))

    def steppers(model, opt, net, topt) -> tuple[Callable, Callable]:
        k = [0, 0]
        step = TrainStep(model, opt, model.new_grads())  # the Trainer's step

        def ours() -> None:
            X, y = data[k[0] % 4]
            k[0] += 1
            step(X, y, need_loss=True)  # the loss too, as autograd's step makes it

        def autograd() -> None:
            X, y = data[k[1] % 4]
            k[1] += 1
            topt.zero_grad()
            F.cross_entropy(net(X), y).backward()
            topt.step()

        return ours, autograd

    def check() -> float:
        model, opt, net, topt = build()
        ours, autograd = steppers(model, opt, net, topt)
        with torch.inference_mode():
            for _ in range(3):
                ours()
        for _ in range(3):
            autograd()
        mods = [m for m in net if isinstance(m, torch.nn.Linear)]
        diff = 0.0
        for i, lin in enumerate(mods):
            diff = max(diff, float((model.params[f"fc{i}.W"] - lin.weight.detach().t()).abs().max()),
                       float((model.params[f"fc{i}.b"] - lin.bias.detach()).abs().max()))
        return diff

    ours, autograd = steppers(*build())
    return ours, autograd, check


def _time(step: Callable, n: int, inference: bool, device: str = "cpu") -> float:
    """Seconds per step over n steps; mlp_core runs inside inference_mode, as the Trainer does.
    On a GPU the clock stops after the device has finished (synchronize)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode(inference):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync()
        return (time.perf_counter() - t0) / n


def time_case(case: Case, repeats: int = 7, chunk_s: float = 0.15, device: str = "cpu"
              ) -> dict[str, float]:
    """Median µs/step of both implementations, timed in alternating chunks of ~chunk_s seconds,
    their ratio, and the ratio's spread: min and max over the repeats of one chunk of each,
    timed back to back."""
    ours, autograd, check = make_pair(case, device=device)
    max_diff = check()
    impls = {"mlp_core": (ours, True), "autograd": (autograd, False)}
    n = {}
    for name, (step, inf) in impls.items():  # warm up and size the chunks
        _time(step, 3, inf, device)
        est = _time(step, 3, inf, device)
        n[name] = max(3, min(5000, int(chunk_s / max(est, 1e-7))))
        _time(step, n[name] // 3 + 1, inf, device)
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for r in range(repeats):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for name in order:
            step, inf = impls[name]
            samples[name].append(_time(step, n[name], inf, device))
    us = {name: statistics.median(s) * 1e6 for name, s in samples.items()}
    pairs = [a / b for a, b in zip(samples["mlp_core"], samples["autograd"], strict=True)]
    return {"mlp_core_us": us["mlp_core"], "autograd_us": us["autograd"],
            "ratio": us["mlp_core"] / us["autograd"], "ratio_min": min(pairs),
            "ratio_max": max(pairs), "max_param_diff": max_diff}
