from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.deletion import (
    CHANGED_MEANWHILE,
    DeletionPlan,
    deletion_plan,
    deletion_summary,
    files_remove_on_commit,
    runs_rows_delete,
)
from webapp.projects.models import Project
from webapp.reviews.services import activity_record_deletion
from webapp.runs.model_sources import config_model_errors
from webapp.teams.models import Role
from webapp.teams.selectors import require_role

logger = logging.getLogger(__name__)


def experiment_config(kind: str, config: dict[str, Any], *,
                      project_id: int | None = None) -> dict[str, Any]:
    """The validated config of an experiment of `kind`: a whole RunConfig, or an EvalConfig less
    its model, which each evaluation job names (ConfigError if invalid). A tracked experiment
    has none: each of its runs records the parameters its script logs. With `project_id`, the
    models it names must be ones that the project's runs can load (webapp.runs.model_sources)."""
    if kind == ExperimentKind.TRACKED:
        return {}
    config_class = EvalConfig if kind == ExperimentKind.EVALUATION else RunConfig
    validated = config_class.from_dict(config).to_dict()
    if kind == ExperimentKind.EVALUATION:
        del validated["model"]
    if project_id is not None:
        errors = config_model_errors(project_id=project_id, config=validated,
                                     config_class=config_class)
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


def experiment_deletion_plan(*, experiment: Experiment) -> DeletionPlan:
    """What deleting the experiment removes: its runs (or evaluation jobs) with their rows and
    folders; refused while one may still write, or another run loads one of its checkpoints."""
    return deletion_plan(runs=experiment.runs.all(), project_id=experiment.project_id,
                         experiments=1)


def experiment_delete(*, experiment: Experiment, user) -> DeletionPlan:
    """Delete the experiment and its runs, then their folders once committed; record it in the
    project's feed. Needs the admin role. ValidationError, with nothing deleted, when the plan
    has refusals."""
    require_role(user, experiment.project.team_id, Role.ADMIN)
    try:
        with transaction.atomic():
            # Locked: a second deletion of it waits for this one, then finds it gone.
            if not Experiment.objects.select_for_update().filter(pk=experiment.pk).exists():
                raise ValidationError(f"Experiment {experiment.name!r} was deleted already.")
            plan = experiment_deletion_plan(experiment=experiment)
            if plan.refusals:
                raise ValidationError(plan.refusals)
            runs_rows_delete(plan.run_ids)
            Experiment.objects.filter(pk=experiment.pk).delete()
            activity_record_deletion(
                project_id=experiment.project_id, actor=user,
                detail=f"experiment {experiment.name} ({deletion_summary(plan)})")
            files_remove_on_commit(plan, project_id=experiment.project_id)
    except IntegrityError:
        raise ValidationError(CHANGED_MEANWHILE) from None
    logger.info("experiment %s (%s) deleted by %s: %s", experiment.pk, experiment.name,
                user.get_username(), deletion_summary(plan))
    return plan
