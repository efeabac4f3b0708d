"""Writes for projects: creating one, and deleting one with everything in it
(webapp.projects.deletion says how files go, and when a deletion is refused)."""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from webapp.projects.deletion import (
    CHANGED_MEANWHILE,
    DeletionPlan,
    deletion_plan,
    deletion_summary,
    files_remove_on_commit,
    runs_rows_delete,
)
from webapp.projects.models import Project
from webapp.runs.models import Run
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role

logger = logging.getLogger(__name__)

def project_create(*, team: Team, name: str, description: str, user) -> Project:
    require_role(user, team.pk, Role.MEMBER)
    return Project.objects.create(team=team, name=name, description=description,
                                  created_by=user)


def project_deletion_plan(*, project: Project) -> DeletionPlan:
    """What deleting the project removes: its experiments, runs and datasets, with the runs'
    folders and the dataset files that nothing else uses; refused while a run may still
    write."""
    return deletion_plan(runs=Run.objects.filter(experiment__project=project),
                         project_id=project.pk, experiments=project.experiments.count(),
                         datasets=project.datasets.all(), whole_project=True)


def project_delete(*, project: Project, user) -> DeletionPlan:
    """Delete the project and everything in it, then its files once committed. Needs the admin
    role. ValidationError, with nothing deleted, when the plan has refusals."""
    require_role(user, project.team_id, Role.ADMIN)
    try:
        with transaction.atomic():
            if not Project.objects.select_for_update().filter(pk=project.pk).exists():
                raise ValidationError(f"Project {project.name!r} was deleted already.")
            plan = project_deletion_plan(project=project)
            if plan.refusals:
                raise ValidationError(plan.refusals)
            runs_rows_delete(plan.run_ids)
            Project.objects.filter(pk=project.pk).delete()
            files_remove_on_commit(plan, project_id=project.pk)
    except IntegrityError:
        raise ValidationError(CHANGED_MEANWHILE) from None
    # No feed outlives the project: the log keeps who deleted it.
    logger.info("project %s (%s) of team %s deleted by %s: %s", project.pk, project.name,
                project.team_id, user.get_username(), deletion_summary(plan))
    return plan
