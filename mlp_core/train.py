"""The training loop: a generator of one record per epoch, resumable from a saved state."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from mlp_core.columns import (  # noqa: F401 (re-exported: the public API names them here)
    BASE_COLUMNS,
    LAYER_COLUMNS,
    TASK_COLUMNS,
    metric_columns,
)
from mlp_core.data import Dataset, batches
from mlp_core.diagnostics import layer_stats
from mlp_core.model import MLP
from mlp_core.optim import LRSchedule
from mlp_core.step import TrainStep

EVAL_CHUNK = 8192  # rows per eval-mode forward (MLP.evaluate's default batch_size)


@dataclass
class TrainConfig:
    """How to train: epochs, batch size, seed of the batch order, divergence rule, probe size."""

    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    diverge_factor: float = 1e3  # diverged when train loss > factor * max(initial loss, 1)
    probe_size: int = 256
    log_layers: bool = True


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_train_config(cfg: TrainConfig) -> None:
    """ValueError naming the first field of `cfg` out of range."""
    rules = (("epochs", _is_int(cfg.epochs) and cfg.epochs >= 1, "an integer >= 1"),
             ("batch_size", _is_int(cfg.batch_size) and cfg.batch_size >= 1, "an integer >= 1"),
             ("seed", _is_int(cfg.seed) and cfg.seed >= 0, "an integer >= 0"),
             ("diverge_factor", isinstance(cfg.diverge_factor, int | float)
              and math.isfinite(cfg.diverge_factor) and cfg.diverge_factor > 1, "a number > 1"),
             ("probe_size", _is_int(cfg.probe_size) and cfg.probe_size >= 1, "an integer >= 1"))
    for name, ok, allowed in rules:
        if not ok:
            raise ValueError(f"{name} must be {allowed}, got {getattr(cfg, name)!r}")


@dataclass
class EpochRecord:
    """One epoch's metrics row, its per-layer rows, the run status after it, and where the
    epoch's time went (seconds): train_s (the steps), eval_s (train/val metrics), layers_s."""

    metrics: dict[str, Any]
    layers: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    timing: dict[str, float] = field(default_factory=dict)


class Trainer:
    """Trains `model` on `data` with `optimizer` and `schedule`; `run()` yields EpochRecords.

    Epoch 0 is the model at initialization (no step). Stops with status "diverged" when a
    loss is non-finite or explodes, "completed" after `cfg.epochs` epochs.
    """

    def __init__(self, model: MLP, optimizer: Any, schedule: LRSchedule, data: Dataset,
                 cfg: TrainConfig) -> None:
        check_train_config(cfg)
        if model.task != data.task:
            raise ValueError(f"a {model.task} model cannot train on {data.task} data {data.name!r}")
        self.model, self.opt, self.schedule, self.data, self.cfg = model, optimizer, schedule, data, cfg
        self.has_val = data.X_val.shape[0] > 0
        self.columns = metric_columns(data.task, self.has_val)
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch order
        n_train = data.X_train.shape[0]
        # BN on a trailing batch of 1-3 samples is unstable: drop the incomplete last batch.
        self.drop_last = model.batchnorm and n_train > cfg.batch_size
        self.X_probe = data.X_train[: cfg.probe_size]
        self.y_probe = data.y_train[: cfg.probe_size]
        # The train and val splits evaluated in one eval-mode pass over both (rows are
        # independent in eval mode), when together they make one chunk.
        n_val = data.X_val.shape[0]
        self.X_eval = (torch.cat([data.X_train, data.X_val]) if self.has_val
                       and n_train + n_val <= EVAL_CHUNK else None)
        # Without BatchNorm the probe's train-mode pass (no dropout) is the eval pass of its
        # rows: the first rows of the train split's eval pass, when that is one chunk.
        self.probe_in_eval = not model.batchnorm and n_train <= EVAL_CHUNK
        # one gradient buffer for every step: each step is done with the last one's gradients
        self.grads = model.new_grads()
        self.train_step = TrainStep(model, optimizer, self.grads)
        self.epoch = 0
        self.step = 0
        self.status = "running"
        self.started = False
        self.initial_loss: float | None = None
        self.prev_W: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------ loop
    def run(self) -> Iterator[EpochRecord]:
        """Yield epoch 0 (unless resumed past it), then one record per epoch until done."""
        if not self.started:
            rec = self._epoch_zero()
            yield rec
        while self.status == "running" and self.epoch < self.cfg.epochs:
            yield self._train_epoch()
        if self.status == "running":
            self.status = "completed"

    @torch.inference_mode()
    def _epoch_zero(self) -> EpochRecord:
        t0 = time.perf_counter()
        self.started = True
        rec = self._record(0, self.schedule.lr_at(1), 0.0, t0)
        self.initial_loss = rec.metrics["train_loss"]
        return self._check(rec)

    @torch.inference_mode()
    def _train_epoch(self) -> EpochRecord:
        train_step = self.train_step
        e = self.epoch + 1
        lr = self.schedule.lr_at(e)
        self.opt.lr = lr
        t0 = time.perf_counter()
        n_seen, finite = 0, True
        for k, (Xb, yb) in enumerate(batches(self.data.X_train, self.data.y_train,
                                             self.cfg.batch_size, self.generator, shuffle=True,
                                             drop_last=self.drop_last), 1):
            # Every 32nd batch's loss is made and read back (one sync per 32 steps) to stop a
            # diverged run mid-epoch: a run that blows up gets non-finite outputs, so NaN
            # gradients and NaN params, which stay NaN, and an earlier step's blow-up shows in
            # this loss too (an epoch's end checks its train and val loss against
            # diverge_factor as well). The other steps make the gradient alone, bit for bit
            # the same, without the loss's kernels.
            loss = train_step(Xb, yb, need_loss=k % 32 == 0)
            n_seen += Xb.shape[0]
            self.step += 1
            if loss is not None and not math.isfinite(float(loss)):
                finite = False
                break
        t_train = time.perf_counter() - t0
        self.epoch = e
        rec = self._record(e, lr, n_seen / max(t_train, 1e-12), t0)
        rec.timing["train_s"] = t_train
        if not finite:
            rec.status = self.status = "diverged"
        return self._check(rec)

    # ------------------------------------------------------------ records
    def _evaluate(self) -> tuple[dict[str, float], dict[str, float], tuple | None]:
        """Eval-mode metrics of the train and val splits (one pass over both where `X_eval`
        holds them, read back in one sync), and the probe's pass when the train split's eval
        pass holds it (see `probe_in_eval`)."""
        model, d = self.model, self.data
        probe, out_val = None, None
        X = self.X_eval if self.X_eval is not None else d.X_train
        if self.probe_in_eval:
            out, cache = model.forward(X, False)
            p = self.X_probe.shape[0]
            probe = (out[:p], {k: [t[:p] for t in v] for k, v in cache.items()})
        else:
            out = model._eval_out(X, EVAL_CHUNK)
        if self.X_eval is not None:
            n_train = d.X_train.shape[0]
            out, out_val = out[:n_train], out[n_train:]
        elif self.has_val:
            out_val = model._eval_out(d.X_val, EVAL_CHUNK)
        parts = [model.metric_tensors(out, d.y_train)]
        if self.has_val:
            parts.append(model.metric_tensors(out_val, d.y_val))
        got = model.read_metrics(parts)
        return got[0], got[1] if self.has_val else {}, probe

    def _record(self, epoch: int, lr: float, samples_per_s: float, t0: float) -> EpochRecord:
        model, d = self.model, self.data
        t_eval = time.perf_counter()
        tr, va, probe = self._evaluate()
        t_layers = time.perf_counter()
        layers = layer_stats(model, self.X_probe, self.y_probe, self.prev_W, forward=probe)
        self.prev_W = {k: v.clone() for k, v in model.params.items() if k.endswith(".W")}
        timing = {"train_s": 0.0, "eval_s": t_layers - t_eval,
                  "layers_s": time.perf_counter() - t_layers}
        grad_norm = math.sqrt(sum(r["grad_norm"] ** 2 for r in layers))  # of the W's
        m: dict[str, Any] = {
            "epoch": epoch, "step": self.step, "lr": lr,
            "train_loss": tr["loss"], "val_loss": va.get("loss"),
            "grad_norm": grad_norm, "weight_norm": model.weight_norm(),
            "epoch_time_s": 0.0, "samples_per_s": samples_per_s,
        }
        if d.task == "classification":
            m.update(train_acc=tr["acc"], val_acc=va.get("acc"))
        else:
            m.update(train_mse=tr["mse"], val_mse=va.get("mse"), val_r2=va.get("r2"))
        m["epoch_time_s"] = time.perf_counter() - t0
        for r in layers:
            r["epoch"] = epoch
        layers = [{c: r[c] for c in LAYER_COLUMNS} for r in layers] if self.cfg.log_layers else []
        return EpochRecord(metrics={c: m[c] for c in self.columns}, layers=layers, timing=timing)

    def _check(self, rec: EpochRecord) -> EpochRecord:
        loss, val = rec.metrics["train_loss"], rec.metrics.get("val_loss", 0.0)
        limit = self.cfg.diverge_factor * max(self.initial_loss or 1.0, 1.0)
        if rec.status == "diverged" or not (math.isfinite(loss) and math.isfinite(val)) \
                or loss > limit:
            rec.status = self.status = "diverged"
        elif self.epoch >= self.cfg.epochs:
            rec.status = self.status = "completed"
        return rec

    @torch.inference_mode()
    def test_metrics(self) -> dict[str, float]:
        """Eval-mode metrics on the test split, keys prefixed with `test_`."""
        res = self.model.evaluate(self.data.X_test, self.data.y_test)
        return {f"test_{k}": v for k, v in res.items()}

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: params, buffers, optimizer, RNGs, counters."""
        return {
            "params": {k: v.clone() for k, v in self.model.params.items()},
            "buffers": {k: v.clone() for k, v in self.model.buffers.items()},
            "optimizer": self.opt.state_dict(),
            "batch_rng": self.generator.get_state(),
            "dropout_rng": self.model.generator.get_state(),
            "epoch": self.epoch, "step": self.step, "status": self.status,
            "started": self.started, "initial_loss": self.initial_loss,
            "prev_W": None if self.prev_W is None else {k: v.clone() for k, v in self.prev_W.items()},
        }

    @torch.inference_mode()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict()` (in place)."""
        for src, dst in ((state["params"], self.model.params), (state["buffers"], self.model.buffers)):
            if set(src) != set(dst):
                raise ValueError("checkpoint does not match the model's parameters: "
                                 f"{sorted(set(src) ^ set(dst))}")
            for k, v in src.items():
                dst[k].copy_(v)
        self.opt.load_state_dict(state["optimizer"])
        self.generator.set_state(state["batch_rng"])
        self.model.generator.set_state(state["dropout_rng"])
        self.epoch, self.step, self.status = state["epoch"], state["step"], state["status"]
        self.started, self.initial_loss = state["started"], state["initial_loss"]
        pw = state["prev_W"]
        self.prev_W = None if pw is None else {k: v.to(self.model.device) for k, v in pw.items()}
