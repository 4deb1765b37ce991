"""The composition cache gives what Hydra's own composition gives: configs, records, errors."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import experiments.harness.schema  # noqa: F401 (registers the structured configs)
from experiments.harness import compose_cache
from experiments.harness.preflight import plan
from experiments.paths import CONF_DIR

SWEEP_DIR = "hydra.sweep.dir='/tmp/study x'"
CASES = [  # (overrides, run mode)
    ([], RunMode.RUN),
    (["seed=3", "epochs=5", "optim.lr=0.05"], RunMode.RUN),
    (["data=digits", "optim=sgd", "optim.lr=0.05", "activation=sigmoid", "seed=1"], RunMode.RUN),
    (["optim=adam", "optim.lr=0.001", "+notes=hello", "++tags=x"], RunMode.RUN),
    (["+experiment=batchnorm_lr", "seed=2", "optim.lr=0.1"], RunMode.RUN),
    (["+experiment=he_vs_xavier_deep", "init=xavier", "depth=3"], RunMode.RUN),
    (["data=csv", "data.path=/tmp/a.csv", "data.target=y"], RunMode.RUN),
    (["name='my run'", "hydra.job.chdir=false", "threads=1"], RunMode.RUN),
    ([SWEEP_DIR, "hydra.mode=MULTIRUN", "activation=relu", "seed=0", "data=digits"],
     RunMode.MULTIRUN),
    ([SWEEP_DIR, "activation=relu,sigmoid", "seed=0,1,2", "data=digits"], RunMode.MULTIRUN),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=1"], RunMode.MULTIRUN),
    (["data.val_frac=0.3", "data=moons", "data.noise=0.2"], RunMode.RUN),
    (["+foo={a:1}", "foo.a=2"], RunMode.RUN),  # order matters: composed whole by Hydra
    (["optim.lr=${optim.weight_decay}", "optim.weight_decay=0.1"], RunMode.RUN),
]
BAD = [
    ["epochs=abc"],
    ["nokey=1"],
    ["data=nope"],
    ["optim.nokey=1"],
    ["seed=0,1"],  # a sweep in a single run
    ["+seed=1"],  # already there
    ["foo.a=2", "+foo={a:1}"],
    ["seed=)"],  # does not parse
]


def _compose(overrides: list[str], mode: RunMode, cached: bool, conf_dir: Path = CONF_DIR
             ) -> DictConfig:
    if cached:
        compose_cache.install()
    else:
        compose_cache.uninstall()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3", job_name="run"):
        loader = GlobalHydra.instance().config_loader()
        return loader.load_configuration("config", overrides, mode)


@pytest.fixture(autouse=True)
def _restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    installed = compose_cache.ConfigLoaderImpl._load_configuration_impl
    monkeypatch.setenv(compose_cache.CACHE_ENV, str(tmp_path / "disk"))  # each test its own
    yield
    compose_cache._CACHE.clear()
    compose_cache.ConfigLoaderImpl._load_configuration_impl = installed  # type: ignore


def _yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


@pytest.mark.parametrize(("overrides", "mode"), CASES)
def test_cached_composition_equals_hydras(overrides: list[str], mode: RunMode) -> None:
    expected = _yaml(_compose(overrides, mode, cached=False))
    _compose(["seed=9", "epochs=2"], RunMode.RUN, cached=True)  # a warm cache of another job
    first = _yaml(_compose(overrides, mode, cached=True))
    again = _yaml(_compose(overrides, mode, cached=True))
    assert first == expected
    assert again == expected


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Hydra's own compositions from now on, by their fixed lines."""
    calls: list[list[str]] = []
    original = compose_cache._ORIGINAL

    def counting(self, name, overrides, *a):  # type: ignore[no-untyped-def]
        calls.append(list(overrides))
        return original(self, name, overrides, *a)

    monkeypatch.setattr(compose_cache, "_ORIGINAL", counting)
    return calls


def test_jobs_of_one_sweep_share_one_composition(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    compose_cache.install()
    p = plan(["-m", "activation=relu,sigmoid", "seed=0,1,2,3", "data=digits", "optim=sgd",
              "optim.lr=0.05", "epochs=3"], CONF_DIR)
    assert p is not None and len(p.configs) == 8
    assert calls == [["data=digits", "optim=sgd"]]
    assert sorted((c.activation.name, c.seed) for c in p.configs) == sorted(
        (a, s) for a in ("relu", "sigmoid") for s in range(4))
    assert {c.optim.lr for c in p.configs} == {0.05} and {c.epochs for c in p.configs} == {3}


@pytest.mark.parametrize("overrides", BAD)
def test_a_bad_override_fails_as_in_hydra(overrides: list[str]) -> None:
    with pytest.raises(Exception) as want:
        _compose(overrides, RunMode.RUN, cached=False)
    _compose(["seed=9"], RunMode.RUN, cached=True)
    with pytest.raises(type(want.value)) as got:
        _compose(overrides, RunMode.RUN, cached=True)
    assert str(got.value) == str(want.value)


def test_an_edited_config_file_is_composed_afresh(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("lr: 0.1\nname: a\n")
    assert _compose(["name=b"], RunMode.RUN, cached=True, conf_dir=conf).lr == 0.1
    (conf / "config.yaml").write_text("lr: 0.25\nname: a\n")
    assert _compose(["name=c"], RunMode.RUN, cached=True, conf_dir=conf).lr == 0.25


def test_what_hydra_reads_from_the_process_is_read_again(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first = _compose(["seed=1"], RunMode.RUN, cached=True)
    monkeypatch.chdir(tmp_path)
    second = _compose(["seed=2"], RunMode.RUN, cached=True)
    assert first.hydra.runtime.cwd != second.hydra.runtime.cwd == os.getcwd()
    assert list(second.hydra.overrides.task) == ["seed=2"]
    assert second.hydra.job.override_dirname == "seed=2"


def test_the_basic_sweeper_hydra_instantiates_skips_its_second_composition() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from experiments.harness import sweeper

    original = Sweeper.validate_batch_is_legal
    found = {c.__name__: c for c in Plugins.instance().discover(Sweeper)}  # Hydra's own scan
    basic = found["BasicSweeper"]
    with sweeper.preflighted():
        assert basic.validate_batch_is_legal is sweeper._validate
        calls: list[object] = []
        sweeper._VALIDATE, saved = (lambda self, batch: calls.append(batch)), sweeper._VALIDATE
        try:
            basic.validate_batch_is_legal(object.__new__(basic), [["seed=1"]])
            assert calls == []  # the basic sweeper's batch: preflighted, not composed again
            other = type("OptunaSweeper", (), {})()  # what the patch reads is the class name
            Sweeper.validate_batch_is_legal(other, [["seed=1"]])  # type: ignore[arg-type]
            assert calls == [[["seed=1"]]]  # any other sweeper: validated as Hydra does
        finally:
            sweeper._VALIDATE = saved
    assert basic.validate_batch_is_legal is original



@pytest.mark.parametrize(("overrides", "mode"), CASES)
def test_a_composition_kept_on_disk_equals_hydras(overrides: list[str], mode: RunMode,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A later process (the memory cache empty) takes the base from disk: Hydra's result."""
    expected = _yaml(_compose(overrides, mode, cached=False))
    _compose(overrides, mode, cached=True)
    assert list((compose_cache.disk_dir() or Path("/nonexistent")).glob("*.pkl"))
    compose_cache._CACHE.clear()  # a new process
    calls = _counting(monkeypatch)
    assert _yaml(_compose(overrides, mode, cached=True)) == expected
    assert calls == []


def test_a_file_edited_in_one_clock_tick_is_composed_afresh(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same size and the same time (an edit within one tick of the file system's clock):
    the disk key reads the bytes."""
    conf = tmp_path / "conf"
    conf.mkdir()
    cfg = conf / "config.yaml"
    cfg.write_text("lr: 0.1\nname: a\n")
    assert _compose(["name=b"], RunMode.RUN, cached=True, conf_dir=conf).lr == 0.1
    st = cfg.stat()
    cfg.write_text("lr: 0.7\nname: a\n")
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))
    compose_cache._CACHE.clear()
    assert _compose(["name=c"], RunMode.RUN, cached=True, conf_dir=conf).lr == 0.7


def test_a_changed_structured_config_is_composed_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema's defaults are Python code: a change in the ConfigStore is a new key."""
    from hydra.core.config_store import ConfigStore

    _compose(["seed=1"], RunMode.RUN, cached=True)
    compose_cache._CACHE.clear()
    calls = _counting(monkeypatch)
    repo = ConfigStore.instance().repo
    ConfigStore.instance().store(group="schema_cache_test", name="extra", node={"a": 1})
    try:
        _compose(["seed=2"], RunMode.RUN, cached=True)
    finally:
        del repo["schema_cache_test"]
    assert calls == [[]]


def test_a_corrupt_or_foreign_file_is_composed_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _yaml(_compose(["seed=4"], RunMode.RUN, cached=False))
    _compose(["seed=4"], RunMode.RUN, cached=True)
    folder = compose_cache.disk_dir()
    assert folder is not None
    (kept,) = folder.glob("*.pkl")
    for junk in (b"", kept.read_bytes()[:100], b"not a pickle", pickle.dumps({"a": 1})):
        kept.write_bytes(junk)
        compose_cache._CACHE.clear()
        calls = _counting(monkeypatch)
        assert _yaml(_compose(["seed=4"], RunMode.RUN, cached=True)) == expected
        assert calls == [[]]
        assert compose_cache._disk_read(folder, kept.name) is not None  # rewritten whole


@pytest.mark.parametrize("value", ["off", "0", "false", "No"])
def test_the_disk_can_be_turned_off(value: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compose_cache.CACHE_ENV, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _compose(["seed=1"], RunMode.RUN, cached=True)
    assert compose_cache.disk_dir() is None
    assert not any(tmp_path.rglob("*.pkl"))


def test_the_default_folder_is_the_users_cache(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compose_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compose_cache.disk_dir() == tmp_path / "xdg" / "mlp-harness" / "compose"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compose_cache.disk_dir() == tmp_path / "home" / ".cache" / "mlp-harness" / "compose"


def test_an_unwritable_folder_only_loses_the_disk_copy(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder would be")
    monkeypatch.setenv(compose_cache.CACHE_ENV, str(blocker / "compose"))
    expected = _yaml(_compose(["seed=5"], RunMode.RUN, cached=False))
    assert _yaml(_compose(["seed=5"], RunMode.RUN, cached=True)) == expected


def test_the_disk_keeps_the_newest_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compose_cache, "_DISK_FILES", 2)
    for i, group in enumerate(["data=moons", "data=digits", "data=xor"]):
        _compose([group], RunMode.RUN, cached=True)
        folder = compose_cache.disk_dir()
        assert folder is not None and len(list(folder.glob("*.pkl"))) == min(i + 1, 2)


def test_a_linked_config_folder_is_read_through_and_a_link_cycle_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config group in a linked folder: an edit there is a new key; a cycle of links ends."""
    conf, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    (elsewhere / "opt").mkdir(parents=True)
    conf.mkdir()
    (conf / "config.yaml").write_text("defaults:\n  - opt: a\n  - _self_\nname: a\n")
    (conf / "opt").symlink_to(elsewhere / "opt")
    (elsewhere / "opt" / "loop").symlink_to(elsewhere / "opt")  # a cycle
    (elsewhere / "opt" / "a.yaml").write_text("lr: 0.1\n")
    assert _compose(["name=b"], RunMode.RUN, cached=True, conf_dir=conf).opt.lr == 0.1
    (elsewhere / "opt" / "a.yaml").write_text("lr: 0.3\n")
    compose_cache._CACHE.clear()
    assert _compose(["name=c"], RunMode.RUN, cached=True, conf_dir=conf).opt.lr == 0.3


def test_no_home_directory_keeps_the_bases_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compose_cache.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert compose_cache.disk_dir() is None
    expected = _yaml(_compose(["seed=6"], RunMode.RUN, cached=False))
    assert _yaml(_compose(["seed=6"], RunMode.RUN, cached=True)) == expected
