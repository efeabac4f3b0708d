"""Deleting a run, an experiment, a dataset or a project: each in one transaction, refused with
nothing deleted while its plan (webapp.deletion.plans) has refusals, its files removed once the
transaction has committed, and recorded in the project's feed (a project's own deletion only in
the log: no feed outlives it)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from webapp.datasets.models import Dataset
from webapp.deletion.plans import (
    CHANGED_MEANWHILE,
    DeletionPlan,
    deletion_plan,
    deletion_summary,
    files_remove_on_commit,
    runs_rows_delete,
)
from webapp.experiments.models import Experiment
from webapp.projects.models import Project
from webapp.reviews.services import activity_record_deletion
from webapp.runs.models import Run
from webapp.runs.services import run_delete_allowed
from webapp.teams.models import Role
from webapp.teams.selectors import require_role

logger = logging.getLogger(__name__)


def run_delete_check(*, run: Run, user) -> None:
    """PermissionDenied unless run_delete_allowed."""
    require_role(user, run.experiment.project.team_id, Role.MEMBER)
    if not run_delete_allowed(run=run, user=user):
        raise PermissionDenied("Members delete only the runs they launched: ask an admin of "
                               "the team to delete this one.")


def run_deletion_plan(*, run: Run) -> DeletionPlan:
    """What deleting the run removes (its rows and its folder, with its checkpoints), and why it
    cannot be deleted now: it may still be writing, or an active run loads its checkpoint."""
    return deletion_plan(runs=Run.objects.filter(pk=run.pk),
                         project_id=run.experiment.project_id)


def run_delete(*, run: Run, user) -> DeletionPlan:
    """Delete the run with everything it recorded, then its folder once committed; record it in
    the project's feed. An active run is refused rather than cancelled here: its worker stops
    the training process only at its next heartbeat, so it must be cancelled, and have stopped,
    first. ValidationError, with nothing deleted, when the plan has refusals."""
    run_delete_check(run=run, user=user)
    try:
        with transaction.atomic():
            # Locked: a second deletion of it waits for this one, then finds it gone.
            if not Run.objects.select_for_update().filter(pk=run.pk).exists():
                raise ValidationError(f"Run {run} was deleted already.")
            plan = run_deletion_plan(run=run)
            if plan.refusals:
                raise ValidationError(plan.refusals)
            runs_rows_delete(plan.run_ids)
            activity_record_deletion(project_id=run.experiment.project_id, actor=user,
                                     detail=f"run {run} ({deletion_summary(plan)})")
            files_remove_on_commit(plan, project_id=run.experiment.project_id)
    except IntegrityError:
        raise ValidationError("An evaluation or a resumed run started from this run's "
                              "checkpoint while it was being deleted: nothing was deleted. "
                              "Look again, then delete.") from None
    logger.info("run %s (%s) deleted by %s: %s", run.pk, run, user.get_username(),
                deletion_summary(plan))
    return plan



def experiment_deletion_plan(*, experiment: Experiment) -> DeletionPlan:
    """What deleting the experiment removes: its runs (or evaluation jobs) with their rows and
    folders; refused while one may still write, or another run loads one of its checkpoints."""
    return deletion_plan(runs=experiment.runs.all(), project_id=experiment.project_id,
                         experiments=1, experiment_ids=[experiment.pk])


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



def dataset_deletion_plan(*, dataset: Dataset) -> DeletionPlan:
    """What deleting the dataset removes: its row, and its files unless another dataset or a
    run's config snapshot (a run that trained on it) still uses them."""
    return deletion_plan(runs=Run.objects.none(), project_id=dataset.project_id,
                         datasets=Dataset.objects.filter(pk=dataset.pk))


def dataset_delete(*, dataset: Dataset, user) -> DeletionPlan:
    """Delete the dataset, then its files that nothing uses any more once committed; record it
    in the project's feed. Needs the admin role. Runs that trained on it keep its rows' file;
    experiments that name it cannot launch until edited (they say so)."""
    require_role(user, dataset.project.team_id, Role.ADMIN)
    with transaction.atomic():
        # Locked: a second deletion of it waits for this one, then finds it gone.
        if not Dataset.objects.select_for_update().filter(pk=dataset.pk).exists():
            raise ValidationError(f"Dataset {dataset.name!r} was deleted already.")
        plan = dataset_deletion_plan(dataset=dataset)
        Dataset.objects.filter(pk=dataset.pk).delete()
        activity_record_deletion(project_id=dataset.project_id, actor=user,
                                 detail=f"dataset {dataset.name} ({deletion_summary(plan)})")
        files_remove_on_commit(plan, project_id=dataset.project_id)
    logger.info("dataset %s (%s) deleted by %s: %s", dataset.pk, dataset.name,
                user.get_username(), deletion_summary(plan))
    return plan



def project_deletion_plan(*, project: Project) -> DeletionPlan:
    """What deleting the project removes: its experiments, runs and datasets, with the runs'
    folders and the dataset files that nothing else uses; refused while a run may still
    write."""
    return deletion_plan(runs=Run.objects.filter(experiment__project=project),
                         project_id=project.pk, experiments=project.experiments.count(),
                         experiment_ids=list(project.experiments.values_list("pk", flat=True)),
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

