"""What a script run runs: its job template rendered at launch, kept in the run's config under
"script". The worker (worker.script_supervisor) reads it; nothing in it is rendered again."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ScriptSpec:
    argv: list[str]  # the program and its arguments, every placeholder filled
    working_dir: str = ""  # absolute; empty: the run's own folder
    environment: dict[str, str] = field(default_factory=dict)
    rollouts_format: str = ""  # "", "trl" or "verl"
    rollouts_path: str = ""  # relative to the run's folder
    checkpoints_path: str = ""  # relative to the run's folder; empty: none tracked
    template_id: int | None = None
    template_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # the values launched with
    # The template's command, environment, devices, parameter specs and resume arguments as they
    # were at launch (webapp.jobs.services): a resume renders them again for its own run folder,
    # even after the template changed or was deleted.
    template_snapshot: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptSpec:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def script_spec_of(config: dict[str, Any]) -> ScriptSpec | None:
    """A run config's script, or None for a run of the built-in trainer."""
    script = config.get("script")
    return ScriptSpec.from_dict(script) if isinstance(script, dict) else None
