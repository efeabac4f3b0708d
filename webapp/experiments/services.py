from __future__ import annotations

from typing import Any

from training.config import RunConfig
from webapp.experiments.models import Experiment
from webapp.projects.models import Project


def experiment_create(*, project: Project, author, name: str, description: str,
                      config: dict[str, Any]) -> Experiment:
    return Experiment.objects.create(project=project, author=author, name=name,
                                     description=description,
                                     config=RunConfig.from_dict(config).to_dict())


def experiment_update(*, experiment: Experiment, name: str, description: str,
                      config: dict[str, Any]) -> Experiment:
    """Change the definition; runs already launched keep the config snapshot they ran with."""
    experiment.name = name
    experiment.description = description
    experiment.config = RunConfig.from_dict(config).to_dict()
    experiment.save(update_fields=["name", "description", "config", "updated_at"])
    return experiment
