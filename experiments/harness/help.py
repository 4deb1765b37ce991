"""`run.py --help`: the project's own help text (hydra.help.template), built from the real config.

Registers the `project_help` resolver that conf/config.yaml's `hydra.help.template` calls: it
sees the config composed with the command line, so `--help +experiment=init_vs_depth` shows that
preset's values and what it sweeps.
"""

from __future__ import annotations

import inspect
import re
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.harness import schema
from experiments.harness.validate import allowed_for, group_options
from experiments.paths import CONF_DIR

WIDTH = 100


def _comments() -> dict[str, str]:
    """The schema's `key: type = default  # comment` lines (Config) -> {key: comment}."""
    out = {}
    for line in inspect.getsource(schema.Config).splitlines():
        m = re.match(r"^    (\w+): [^=]+=[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def preset_blurb(path: Path, width: int = 74) -> str:
    """The first line of a preset's header comment (it says what the preset studies), cut to
    `width` at a word boundary."""
    for line in path.read_text().splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#"):
            break
        if text and not text.startswith("@package"):
            return text if len(text) <= width else text[:width - 3].rsplit(" ", 1)[0] + " ..."
    return ""


def _value(v: Any) -> str:
    if isinstance(v, Enum):
        return v.name
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, str) and v == "":
        return '""'
    return str(v).replace("\n", " ")


def _row(key: str, value: str, what: str) -> str:
    head = f"  {key:<20} {value:<10}"
    return f"{head} {what}" if what else head.rstrip()


def _keys(cfg: DictConfig) -> list[str]:
    comments = _comments()
    out = []
    for key in cfg:
        if key in ("data", "optim", "hydra"):
            continue
        node = OmegaConf.select(cfg, str(key))
        what = comments.get(str(key)) or allowed_for(str(key))
        if what.startswith("see `"):
            what = ""
        out.append(_row(str(key), _value(node), what))
    return out


def _group(cfg: DictConfig, group: str) -> list[str]:
    node = cfg[group]
    choice = node.get("name", "?")
    others = [o for o in group_options(group) if o != choice]
    out = [f"  {group + '=' + choice:<31} others: {', '.join(others)}"]
    for key in node:
        if key == "name":
            continue
        full = f"{group}.{key}"
        what = allowed_for(full)
        out.append(_row(f"  {full}", _value(node[key]),
                        "" if what.startswith("see `") else what))
    return out


def _presets() -> list[str]:
    return [f"  {p.stem:<24}{preset_blurb(p)}"
            for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))]


def _sweeps(cfg: DictConfig) -> list[str]:
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    return [f"  {k}={v}" for k, v in params.items()]


def project_help(_root_: DictConfig) -> str:
    """The help text for the config composed with this command line."""
    cfg = _root_
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}
    preset = choices.get("experiment")
    lines = [
        "run.py: train hand-written MLPs; one run, or a sweep (-m) of one run per combination.",
        "Every value of every job is checked before anything starts.",
        "",
        "usage",
        "  python experiments/run.py [key=value ...]           one run",
        "      -> outputs/runs/<date>_<time>[_<name>]/",
        "  python experiments/run.py -m key=a,b [key=c,d ...]  a sweep, one run per combination",
        "      -> outputs/sweeps/<date>_<time>[_<name>]/<job>/",
        "  python experiments/run.py -m +experiment=<preset>   a preset sweep (presets need the +)",
        "",
        "launch",
        "  name=<text>           label the folder <date>_<time>_<text>/ (default: the preset's name)",
        "  dry_run=true          list every job: overrides, run dir, and run / resume from epoch N /",
        "                        skip (done) / refuse; creates nothing",
        "  resume=latest         continue the newest sweep (with -m) or run in place; resume=<dir>",
        "  notes=\"...\" tags=[a,b] free annotations shown by compare.py, never part of the identity",
        "  Ctrl-C or SIGTERM     stop after the current epoch: runs marked interrupted, and the",
        "                        exact command that resumes them printed",
        "  +logger=mlflow        log each epoch to MLflow as it is written (+logger=tensorboard:",
        "                        TensorBoard); needs the [trackers] extra",
        "  --cfg job             print the composed config;  --hydra-help: Hydra's own flags",
        "",
        "keys (value with this command line; what it takes)",
        *_keys(cfg),
        "",
        "groups (group=option)",
        *_group(cfg, "data"),
        *_group(cfg, "optim"),
        "",
        "presets (+experiment=<name>; `--help +experiment=<name>` shows its values)",
        *_presets(),
    ]
    sweeps = _sweeps(cfg)
    if sweeps:
        lines += ["", f"this command line sweeps ({'preset ' + preset if preset else 'its config'}):",
                  *sweeps]
    lines += ["", "then: python experiments/compare.py (newest sweep), python experiments/export.py "
              "--to mlflow|tensorboard; docs/harness.md"]
    return "\n".join(lines).replace("$", "$$")  # Hydra passes the text through string.Template


OmegaConf.register_new_resolver("project_help", project_help, replace=True)
