from __future__ import annotations

from typing import Any

from training.config import RunConfig
from training.eval_config import EvalConfig
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.models import Project


def experiment_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The validated config of an experiment of `kind`: a whole RunConfig, or an EvalConfig less
    its model, which each evaluation job names (ConfigError if invalid). A tracked experiment
    has none: each of its runs records the parameters its script logs."""
    if kind == ExperimentKind.TRACKED:
        return {}
    if kind == ExperimentKind.EVALUATION:
        validated = EvalConfig.from_dict(config).to_dict()
        del validated["model"]
        return validated
    return RunConfig.from_dict(config).to_dict()


def experiment_create(*, project: Project, author, name: str, description: str,
                      config: dict[str, Any],
                      kind: str = ExperimentKind.TRAINING) -> Experiment:
    return Experiment.objects.create(project=project, author=author, name=name, kind=kind,
                                     description=description,
                                     config=experiment_config(kind, config))


def experiment_update(*, experiment: Experiment, name: str, description: str,
                      config: dict[str, Any]) -> Experiment:
    """Change the definition; runs already launched keep the config snapshot they ran with."""
    experiment.name = name
    experiment.description = description
    experiment.config = experiment_config(experiment.kind, config)
    experiment.save(update_fields=["name", "description", "config", "updated_at"])
    return experiment
