from __future__ import annotations

from collections.abc import Callable
from typing import Any

from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.models import Project

# Checks of a config against its project that apps above this one contribute, each returning a
# problem per field name: webapp.runs checks that the models a config names are ones the
# project's runs can load (its checkpoints are runs' rows). Registered in their AppConfig.ready.
ConfigCheck = Callable[..., dict[str, str]]
_config_checks: list[ConfigCheck] = []


def config_check_register(check: ConfigCheck) -> None:
    """Have experiment_config call `check(project_id=, config=, config_class=)`."""
    if check not in _config_checks:
        _config_checks.append(check)


def experiment_config(kind: str, config: dict[str, Any], *,
                      project_id: int | None = None) -> dict[str, Any]:
    """The validated config of an experiment of `kind`: a whole RunConfig, or an EvalConfig less
    its model, which each evaluation job names (ConfigError if invalid). A tracked experiment
    has none: each of its runs records the parameters its script logs. With `project_id`, it must
    also pass the project's checks (config_check_register): the models it names must be ones
    that the project's runs can load."""
    if kind in (ExperimentKind.TRACKED, ExperimentKind.SCRIPT):
        return {}  # a script experiment's runs each keep the command they were launched with
    config_class = EvalConfig if kind == ExperimentKind.EVALUATION else RunConfig
    validated = config_class.from_dict(config).to_dict()
    if kind == ExperimentKind.EVALUATION:
        del validated["model"]
    if project_id is not None:
        errors: dict[str, str] = {}
        for check in _config_checks:
            errors.update(check(project_id=project_id, config=validated,
                                config_class=config_class))
        if errors:
            raise ConfigError(errors)
    return validated


def experiment_create(*, project: Project, author, name: str, description: str,
                      config: dict[str, Any],
                      kind: str = ExperimentKind.TRAINING) -> Experiment:
    return Experiment.objects.create(project=project, author=author, name=name, kind=kind,
                                     description=description,
                                     config=experiment_config(kind, config,
                                                              project_id=project.pk))


def experiment_update(*, experiment: Experiment, name: str, description: str,
                      config: dict[str, Any]) -> Experiment:
    """Change the definition; runs already launched keep the config snapshot they ran with."""
    experiment.name = name
    experiment.description = description
    experiment.config = experiment_config(experiment.kind, config,
                                          project_id=experiment.project_id)
    experiment.save(update_fields=["name", "description", "config", "updated_at"])
    return experiment
