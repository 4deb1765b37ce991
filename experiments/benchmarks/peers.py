"""mlp_core's Trainer against scikit-learn's MLPClassifier on digits: same net, optimizer, batches.

scikit-learn runs in a child process (`python peers.py --serve`, one request a line): its
OpenBLAS threads keep spinning after each call and would slow torch's threads down in a shared
process. A child is started with this machine's OPENBLAS_CORETYPE setting or with OpenBLAS
choosing its own kernel (the variable unset in that child alone), with OpenBLAS's default
threads or one.
mlp_core trains with the torch threads the harness gives this net (`threads=auto`).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from experiments.harness.jobs import JobInfo, resolve_threads
from mlp_core.data import load_dataset
from mlp_core.model import MLPClassifier
from mlp_core.optim import SGD, LRSchedule
from mlp_core.train import TrainConfig, Trainer

HIDDEN, BATCH, MOMENTUM = (128, 128), 64, 0.9
# sklearn draws weights from U(+-sqrt(6 / (fan_in + fan_out))) for ReLU nets: our xavier_uniform
INIT = "xavier_uniform"
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def run_mlp_core(epochs: int, lr: float, seed: int = 0) -> dict[str, Any]:
    """Train with the real Trainer at the harness's thread count (restored after); train time
    from its samples_per_s, full epoch from epoch_time_s."""
    d = load_dataset("digits", seed=seed, dtype=torch.float32)
    model = MLPClassifier(d.in_dim, d.out_dim, list(HIDDEN), activation="relu", init=INIT, seed=seed)
    before = torch.get_num_threads()
    # threads=auto's rule for a run of this net alone, as run.py applies it
    torch.set_num_threads(resolve_threads("auto", JobInfo(), 6.0 * BATCH * model.n_params))
    try:
        return _train(model, d, epochs, lr, seed)
    finally:
        torch.set_num_threads(before)


def _train(model: MLPClassifier, d: Any, epochs: int, lr: float, seed: int) -> dict[str, Any]:
    opt = SGD(model.params, lr=lr, momentum=MOMENTUM)
    trainer = Trainer(model, opt, LRSchedule(lr, epochs), d,
                      TrainConfig(epochs=epochs, batch_size=BATCH, seed=seed, log_layers=False))
    n_train = d.X_train.shape[0]
    train_s = full_s = 0.0
    t0 = time.perf_counter()
    for rec in trainer.run():
        if rec.metrics["epoch"] > 0:
            train_s += n_train / rec.metrics["samples_per_s"]
            full_s += rec.metrics["epoch_time_s"]
    wall = time.perf_counter() - t0
    return {"epoch_s": train_s / epochs, "epoch_with_metrics_s": full_s / epochs, "wall_s": wall,
            "test_acc": trainer.test_metrics()["test_acc"], "epochs": trainer.epoch,
            "threads": torch.get_num_threads()}


def _sklearn(epochs: int, lr: float, seed: int) -> dict[str, Any]:
    """Fit sklearn's MLPClassifier on the same float32 splits (its BLAS threads: their default)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    from threadpoolctl import threadpool_info

    d = load_dataset("digits", seed=seed, dtype=torch.float32)
    X, y = d.X_train.numpy(), d.y_train.numpy()
    clf = SkMLP(hidden_layer_sizes=HIDDEN, activation="relu", solver="sgd", alpha=0.0,
                batch_size=BATCH, learning_rate="constant", learning_rate_init=lr,
                momentum=MOMENTUM, nesterovs_momentum=False, max_iter=epochs, shuffle=True,
                tol=0.0, n_iter_no_change=epochs + 1, early_stopping=False, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        clf.fit(X, y)
        fit_s = time.perf_counter() - t0
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"epoch_s": fit_s / clf.n_iter_, "wall_s": fit_s, "epochs": clf.n_iter_,
            "test_acc": float(clf.score(d.X_test.numpy(), d.y_test.numpy())),
            "dtype": str(clf.coefs_[0].dtype),
            "blas": ", ".join(f"{b['internal_api']} {b.get('architecture', '?')} "
                              f"{b['num_threads']} threads" for b in blas[:1])}


def _child_env(own_kernel: bool, one_thread: bool) -> dict[str, str]:
    """The environment of a scikit-learn child: own_kernel unsets OPENBLAS_CORETYPE/L2_SIZE
    (numpy's OpenBLAS then picks its kernel for this CPU); one_thread sets
    OPENBLAS_NUM_THREADS=1 (faster than two for these small GEMMs on this machine)."""
    env = dict(os.environ)
    if own_kernel:
        for var in BLAS_VARS:
            env.pop(var, None)
    if one_thread:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = "1"
    return env


class SklearnChild:
    """A child process that fits scikit-learn's MLPClassifier on request, one seed at a time
    (`fit`), so that a bench alternates it with mlp_core run by run: the two sides of a
    comparison then run seconds apart, not a minute (the VM's speed drifts over minutes).
    Use as a context manager; `own_kernel`, `one_thread` as in `_child_env`."""

    # OpenBLAS's threads spin for a while after a call (its THREAD_TIMEOUT, 2^28 cycles:
    # ~0.1 s here) and would slow the next mlp_core run down: `fit` waits this long after one
    SPIN_S = 0.3

    def __init__(self, own_kernel: bool = False, one_thread: bool = False,
                 timeout: float = 900) -> None:
        self.timeout = timeout
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve"],
                                     env=_child_env(own_kernel, one_thread), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err)

    def fit(self, epochs: int, lr: float, seed: int) -> dict[str, Any]:
        """`_sklearn(epochs, lr, seed)` in the child."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"epochs": epochs, "lr": lr, "seed": seed}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._fail()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self._fail()
        time.sleep(self.SPIN_S)
        return json.loads(line)

    def _fail(self) -> None:
        self.close()
        self.err.seek(0)
        raise RuntimeError(f"scikit-learn child failed: {self.err.read().strip()[-500:]}")

    def close(self) -> None:
        """End the child (it exits when its input closes; killed after 10 s)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SklearnChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.err.close()


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    for request in sys.stdin:
        kw = json.loads(request)
        print(json.dumps(_sklearn(kw["epochs"], kw["lr"], kw["seed"])), flush=True)
