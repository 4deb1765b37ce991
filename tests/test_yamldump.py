"""yamldump writes the text OmegaConf's own to_yaml writes, for configs and for odd strings."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import yaml
from omegaconf import OmegaConf

import experiments.harness.schema  # noqa: F401 (registers the structured configs)
from experiments.harness import yamldump
from tests.helpers import hydra_composed

pytestmark = pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False),
                                reason="PyYAML without libyaml: yamldump is not installed")
COMPOSED = [
    [],
    ["data=digits", "optim=sgd", "activation=sigmoid", "seed=1", "+notes='a note: with #'"],
    ["+experiment=batchnorm_lr", "seed=2"],
    ["data=csv", "data.path=/tmp/a b.csv", "data.target=y", "name='x, y'"],
    ["+tags=[a,b]", "+notes={k:'v v'}"],
]
ODD = ["yes", "no", "1e3", "0x1f", "a: b", "#x", "x #y", "line1\nline2\n", "ünï©ødé ✓", "x" * 200,
       "word " * 40, "", "null", "~", " lead", "trail ", "tab\there", "end:", "'q'", '"dq"',
       "- item", "{a: 1}", "%TAG", "@at", "`bt", "3.14", ".inf", "2026-11-30", "a\x85b", "😀 emoji",
       "a\U00010000b", "\ufeffbom", "a\u2028b", "\x07bell", "trailing\n\n", " \n", "\\back",
       "${oc.env:HOME}", "a\r\nb", "two  spaces\n  indented\n", 'inner "quotes"', '"starts',
       '${oc.select:a,""}', 'a: "b"', '- "c"', 'x\n"y"', '"', '""']


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    yamldump.uninstall()


def _both(cfg: object, **kw: bool) -> tuple[str, str]:
    yamldump.uninstall()
    own = OmegaConf.to_yaml(cfg, **kw)
    yamldump.install()
    return own, OmegaConf.to_yaml(cfg, **kw)


@pytest.mark.parametrize("overrides", COMPOSED)
def test_what_hydra_writes_into_a_job_is_the_same_text(overrides: list[str]) -> None:
    cfg = hydra_composed(overrides)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    for part in (cfg, task, OmegaConf.masked_copy(cfg, "hydra"), cfg.hydra.overrides.task):
        own, ours = _both(part)
        assert ours == own
    assert _both(cfg, sort_keys=True)[0] == _both(cfg, sort_keys=True)[1]
    assert _both(task, resolve=True)[0] == _both(task, resolve=True)[1]


@pytest.mark.parametrize("text", ODD)
def test_an_odd_string_is_written_as_omegaconf_writes_it(text: str) -> None:
    cfg = OmegaConf.create({"value": text, text or "empty": [text, {"k": text}], "n": [1, None]})
    own, ours = _both(cfg)
    assert ours == own


def test_random_strings_are_written_as_omegaconf_writes_them() -> None:
    """Folding of long lines, breaks, quotes, escapes: 600 random keys and values."""
    rng = random.Random(0)
    alphabet = list(" \n\t:#-?'\"abcXYZ019.,{}[]&*!|>%@`\\/=~_+") + [
        "é", "✓", "\u2028", "\r", "\x00", "\x85", "😀", "word ", "\n  ", "${a.b}", "yes", ": ",
        '""', '- "', ': "', '\n"']
    for _ in range(200):
        value = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 5, 40, 120, 300])))
        key = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 6, 30])))
        for data in ({"v": value}, {key: [value, 1]}, {"a": {key: {"b": value}}}):
            own, ours = _both(OmegaConf.create(data))
            assert ours == own, (data, own, ours)


def test_hydras_own_record_of_a_job_is_written_by_libyaml() -> None:
    """The point of it: hydra.yaml (with the run dir's `""` default) takes the fast path."""
    hydra = OmegaConf.masked_copy(hydra_composed(["seed=3"]), "hydra")
    text = yamldump.to_yaml(hydra)
    assert '""' in text and not yamldump._DOUBLE_QUOTED.search(text)


def test_install_is_idempotent_and_uninstall_restores() -> None:
    yamldump.install()
    yamldump.install()
    assert OmegaConf.to_yaml is yamldump.to_yaml
    yamldump.uninstall()
    assert OmegaConf.to_yaml is yamldump._ORIGINAL
