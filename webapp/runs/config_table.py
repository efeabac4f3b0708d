"""The run page's config table: the settings that differ from their defaults first, section by
section, the rest apart (folded on the page); a tracked run's parameters as they came."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.spec.algorithms import ALGORITHMS
from training.spec.config import RunConfig
from training.spec.evaluation_config import EvalConfig
from training.spec.settings import SECTIONS
from webapp.runs.models import Run


@dataclass(frozen=True)
class ConfigRow:
    name: str
    value: Any
    help: str = ""
    section: str = ""  # its title in SECTIONS
    default: Any = None


@dataclass(frozen=True)
class ConfigTable:
    changed: list[ConfigRow]  # set to other than the default (every parameter of a tracked run)
    defaults: list[ConfigRow]  # at their defaults


def config_table(run: Run) -> ConfigTable:
    """`run`'s settings, those that differ from the defaults apart from the rest. Settings the
    run's algorithm does not read (another algorithm's, in a config stored before algorithms
    owned their settings) are left out."""
    config = run.config or {}
    if run.is_tracked:  # the parameters its script logged, as they came
        return ConfigTable([ConfigRow(name, value) for name, value in sorted(config.items())], [])
    if run.is_evaluation:
        fields = list(EvalConfig.fields())
    else:
        algorithm = config.get("algorithm", RunConfig.algorithm)
        fields = (RunConfig.fields_for(algorithm) if algorithm in ALGORITHMS
                  else list(RunConfig.fields()))
    order = list(SECTIONS)
    fields.sort(key=lambda f: order.index(f.metadata["section"]))  # stable: field order within
    changed, defaults = [], []
    for f in fields:
        if f.name not in config:
            continue
        row = ConfigRow(f.name, config[f.name], f.metadata["help"],
                        SECTIONS[f.metadata["section"]], f.default)
        (defaults if config[f.name] == row.default else changed).append(row)
    return ConfigTable(changed, defaults)
