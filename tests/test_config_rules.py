"""One set of range rules: a value the harness refuses before a run, mlp_core refuses too.

For every key the harness checks (validate.RULES and its cross-key checks) a bad value is
composed into a config; validate() must refuse it naming the key, and building the mlp_core
objects from the same config without validation (data, model, optimizer, schedule, Trainer)
must raise ValueError. Values at the edges of each range pass both.
"""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.harness.build import build
from experiments.harness.validate import RULES, ConfigError, validate
from experiments.paths import CONF_DIR

BAD = [  # (overrides, the key the refusal names)
    (["width=0"], "width"),
    (["init=normal", "init_std=0"], "init_std"),
    (["dropout=1.0"], "dropout"),
    (["dropout=-0.1"], "dropout"),
    (["epochs=0"], "epochs"),
    (["batch_size=0"], "batch_size"),
    (["seed=-1"], "seed"),
    (["diverge_factor=1.0"], "diverge_factor"),
    (["probe_size=0"], "probe_size"),
    (["data.n_samples=9"], "data.n_samples"),
    (["data=moons", "data.noise=-0.1"], "data.noise"),
    (["data.seed=-1"], "data.seed"),
    (["data.val_frac=-0.1"], "data.val_frac"),
    (["data.test_frac=0"], "data.test_frac"),
    (["data.val_frac=0.5", "data.test_frac=0.5"], "data.test_frac"),
    (["data.n_classes=1"], "data.n_classes"),
    (["data=blobs", "data.n_features=0"], "data.n_features"),
    (["data=friedman1", "data.n_features=4"], "data.n_features"),
    (["data=circles", "data.factor=1.0"], "data.factor"),
    (["optim.lr=-0.1"], "optim.lr"),
    (["optim.weight_decay=-1"], "optim.weight_decay"),
    (["optim.warmup_epochs=-1"], "optim.warmup_epochs"),
    (["epochs=2", "optim.warmup_epochs=3"], "optim.warmup_epochs"),
    (["optim.schedule=step", "optim.step_size=0"], "optim.step_size"),
    (["optim.schedule=step", "optim.gamma=0"], "optim.gamma"),
    (["optim.min_lr=-1"], "optim.min_lr"),
    (["optim.schedule=cosine", "optim.lr=0.1", "optim.min_lr=0.2"], "optim.min_lr"),
    (["optim=sgd", "optim.momentum=1.0"], "optim.momentum"),
    (["optim=sgd", "optim.momentum=-0.1"], "optim.momentum"),
    (["optim=sgd", "optim.dampening=1.5"], "optim.dampening"),
    (["optim=sgd", "optim.nesterov=true", "optim.momentum=0"], "optim.nesterov"),
    (["optim.beta1=1.0"], "optim.beta1"),
    (["optim.beta2=-0.1"], "optim.beta2"),
    (["optim.eps=0"], "optim.eps"),
]
GOOD = [  # the edges of the ranges above: both levels accept them
    ["optim.lr=0"], ["optim=sgd", "optim.momentum=0"], ["optim=sgd", "optim.momentum=0.99"],
    ["optim.schedule=step", "optim.gamma=2"], ["epochs=2", "optim.warmup_epochs=2"],
    ["data=circles", "data.factor=0"], ["data.n_samples=10"], ["data.val_frac=0"],
    ["data=friedman1", "data.n_features=5"], ["diverge_factor=1.5"], ["probe_size=1"],
    ["epochs=1"], ["init=normal", "init_std=1e-6"], ["optim.schedule=cosine", "optim.min_lr=0.01"],
]
# Keys mlp_core never sees as such: the harness turns them into other values or uses them itself.
HARNESS_ONLY = {
    "depth": "mlp_core takes hidden=[width] * depth",
    "device": "a torch device string, checked against the machine by the harness",
    "threads": "torch.set_num_threads, set by the harness",
    "gradcheck_tol": "the harness's acceptance of gradcheck's error",
    "data.path": "a string; mlp_core reports a missing file when it reads it",
    "data.target": "a string; mlp_core reports an unknown column when it reads the file",
}


def _cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="rules"):
        return compose(config_name="config", overrides=overrides)


def test_every_rule_of_the_harness_has_a_bad_value_here_or_is_harness_only() -> None:
    covered = {key for _, key in BAD} | set(HARNESS_ONLY)
    assert set(RULES) - covered == set()


@pytest.mark.parametrize("overrides,key", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_bad_value_is_refused_by_the_harness_and_by_mlp_core(overrides: list[str],
                                                                key: str) -> None:
    cfg = _cfg(overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == key
    with pytest.raises(ValueError):
        build(cfg).trainer()


@pytest.mark.parametrize("overrides", GOOD, ids=[" ".join(o) for o in GOOD])
def test_a_value_at_the_edge_of_a_range_passes_both_levels(overrides: list[str]) -> None:
    cfg = _cfg(overrides)
    validate(cfg)
    build(cfg).trainer()
