"""Writes for tracked runs: runs that a script outside rlab reports through the SDK or the
MLflow-compatible API (an experiment found or made by name, its parameters, tags, name and end),
with no training process of rlab's own."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.activity import Verb
from webapp.runs.models import TERMINAL_STATUSES, Run, RunStatus
from webapp.runs.services import run_create, run_transition


def tracked_experiment_get_or_create(*, project, user, name: str) -> Experiment:
    """The project's tracked experiment called `name`, created on first use. ValidationError if
    a training or evaluation experiment has that name."""
    name = name.strip()[:120]
    if not name:
        raise ValidationError("An experiment needs a name.")
    experiment, _ = Experiment.objects.get_or_create(
        project=project, name=name,
        defaults={"kind": ExperimentKind.TRACKED, "config": {}, "author": user})
    if not experiment.is_tracked:
        raise ValidationError(f"{name!r} is a {experiment.kind} experiment of this project, "
                              f"launched from rlab: log to another name.")
    return experiment


def tracked_run_create(*, experiment: Experiment, user, name: str = "",
                       params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
                       started_at: datetime | None = None, client_key: str = "") -> Run:
    """A run of a tracked experiment, running from the start: its script logs to it (metrics,
    rollouts, parameters, tags) and ends it. No worker ever claims it.

    `client_key`, made up by the script for this run, makes the call safe to repeat: the
    experiment's run created with that key is returned as it is, so a retry after a lost answer
    does not start a second run."""
    if not experiment.is_tracked:
        raise ValidationError(f"{experiment.name} is a {experiment.kind} experiment: launch it "
                              f"instead.")
    started = started_at or timezone.now()
    with transaction.atomic():
        if client_key:
            # Two tries at once with one key wait here for each other; the second finds the run.
            Experiment.objects.select_for_update().filter(pk=experiment.pk).first()
            created = experiment.runs.filter(client_key=client_key).first()
            if created is not None:
                return created
        return run_create(experiment=experiment, config=dict(params or {}), user=user,
                           verb=Verb.LAUNCHED, detail="tracked", enqueue=False,
                           status=RunStatus.RUNNING, name=name.strip()[:250],
                           tracked_tags=dict(tags or {}), client_key=client_key,
                           started_at=started, running_since=started,
                           heartbeat_at=timezone.now())


def tracked_run_log_params(*, run_id: int, params: dict[str, str]) -> None:
    """Add parameters to a tracked run's config. A parameter keeps its first value, as in
    MLflow: logging it again with another value is a ValidationError, and nothing is stored."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        changed = {key: (run.config[key], value) for key, value in params.items()
                   if key in run.config and run.config[key] != value}
        if changed:
            raise ValidationError("Parameters keep their first value: " + "; ".join(
                f"{key} is {old!r}, not {new!r}" for key, (old, new) in changed.items()))
        run.config = {**run.config, **params}
        run.save(update_fields=["config"])


def tracked_run_set_tags(*, run_id: int, tags: dict[str, str]) -> None:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        run.tracked_tags = {**run.tracked_tags, **tags}
        run.save(update_fields=["tracked_tags"])


def tracked_run_rename(*, run_id: int, name: str) -> None:
    """A tracked run's name, as its script renames it (MLflow's update_run, or its run-name
    tag); a blank name is ignored."""
    name = name.strip()[:250]
    if name:
        Run.objects.filter(pk=run_id).update(name=name)


def tracked_run_finish(*, run_id: int, status: str, finished_at: datetime | None = None) -> bool:
    """End a tracked run as its script reports: succeeded, failed or cancelled. False if it had
    already ended."""
    if status not in TERMINAL_STATUSES:
        raise ValidationError(f"A run ends as one of {', '.join(sorted(TERMINAL_STATUSES))}, "
                              f"not {status!r}.")
    fields = {"finished_at": finished_at} if finished_at else {}
    return run_transition(run_id=run_id, to=status, **fields)
