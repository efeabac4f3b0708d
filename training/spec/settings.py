"""The machinery of every group of settings: a field with its help, bounds and choices
(`setting`), and a frozen dataclass that parses and validates itself from a plain dict
(`Settings`), naming every bad field at once (`ConfigError`). No torch here.

RunConfig (training.spec.config), each algorithm's own settings (training.spec.algorithms) and
EvalConfig (training.spec.evaluation_config) are built from these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field
from typing import Any, Self

from training.spec.model_refs import RefKind, parse_model_refs

# The sections settings belong to, in the order the form and the config table show them; a
# config file may nest its settings under these names.
SECTIONS = {
    "model": "Model",
    "task": "Task and data",
    "rollout": "Rollouts",
    "algorithm": "Algorithm",
    "optimisation": "Optimisation",
    "kl": "KL and reference",
    "rewards": "Rewards",
    "sampling": "Prompt sampling",
    "evaluation": "Evaluation",
    "checkpoints": "Checkpoints",
    "performance": "Performance",
}


def setting(default: Any, help: str, *, section: str, label: str = "",
            choices: dict[str, str] | None = None, min: float | None = None,
            max: float | None = None, advanced: bool = False, blank: bool = False,
            parse: Callable[[str], Any] | None = None, models: str | None = None) -> Any:
    """A config field in one of SECTIONS; `advanced` ones sit folded away in the form, under
    their defaults; a `blank` text field may be left empty; `parse` checks a text field's syntax
    (ValueError).

    `models` marks a field that names models (training.spec.model_refs): "one" reference, a comma
    "list" of them, or a "checkpoint" only."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}")
    metadata = {"help": help, "label": label, "choices": choices, "min": min, "max": max,
                "advanced": advanced, "blank": blank, "parse": parse, "models": models,
                "section": section}
    return field(default=default, metadata=metadata)


def check_model_field(kind: str, text: str, *, paths: bool) -> None:
    """ValueError unless `text` is what a `models` field of this kind accepts."""
    refs = parse_model_refs(text, paths=paths)
    if kind == "one" and len(refs) != 1:
        raise ValueError("give one model")
    if kind == "checkpoint" and not all(
            ref.kind in (RefKind.CHECKPOINT, RefKind.PATH) for ref in refs):
        raise ValueError("give a checkpoint of this project: checkpoint:<id>")


class ConfigError(ValueError):
    """A config that cannot run; `errors` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


class Settings:
    """A frozen dataclass of `setting`s that parses and validates itself from a plain dict."""

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return tuple(f for f in dataclasses.fields(cls) if "section" in f.metadata)

    @classmethod
    def fields_of(cls, values: dict[str, Any]) -> tuple[dataclasses.Field, ...]:
        """The settings that a config with these flat `values` has: this class's fields
        (RunConfig adds its algorithm's own)."""
        return cls.fields()

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, paths: bool = False) -> Self:
        """Parse and validate; raise ConfigError naming every bad field, unknown keys included.

        Fields that name models take references (training.spec.model_refs); `paths` admits
        file-system paths too, for a config whose author owns the machine (training.cli) or
        whose paths rlab chose (the worker's training process)."""
        values, errors = cls.parse_fields(data, paths=paths)
        known = {f.name for f in cls.fields()}
        errors.update({name: "unknown setting" for name in data if name not in known})
        if errors:
            raise ConfigError(errors)
        config = cls(**values)
        errors = config.combination_errors()
        if errors:
            raise ConfigError(errors)
        return config

    @classmethod
    def parse_fields(cls, data: dict[str, Any], *, paths: bool,
                     ) -> tuple[dict[str, Any], dict[str, str]]:
        """The values of this class's fields that `data` gives, and the errors of those that
        are bad; keys of `data` that are not fields are left to the caller."""
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for f in cls.fields():
            if f.name not in data:
                continue
            try:
                values[f.name] = coerce(f, data[f.name], paths=paths)
            except ValueError as exc:
                errors[f.name] = str(exc)
        return values, errors

    def combination_errors(self) -> dict[str, str]:
        """Settings that are valid alone but not together, by the field to change."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.fields()}


def coerce(f: dataclasses.Field, raw: Any, *, paths: bool) -> Any:
    """`raw` as the value of field `f`; ValueError saying what is wrong with it."""
    kind = type(f.default)
    meta = f.metadata
    if kind is bool:
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    if kind is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"expected a whole number, got {raw!r}")
        try:
            value: Any = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {raw!r}") from None
    elif kind is float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
    else:
        if not isinstance(raw, str):
            raise ValueError(f"expected text, got {raw!r}")
        value = raw.strip()
        if not value and not meta["blank"]:
            raise ValueError("must not be empty")
        if meta["parse"] is not None:
            meta["parse"](value)
        if meta["models"] and value:
            check_model_field(meta["models"], value, paths=paths)
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"must be one of: {', '.join(meta['choices'])}")
    if meta["min"] is not None and value < meta["min"]:
        raise ValueError(f"must be at least {meta['min']:g}")
    if meta["max"] is not None and value > meta["max"]:
        raise ValueError(f"must be at most {meta['max']:g}")
    return value
