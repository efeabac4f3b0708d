"""Writes for tracked runs: runs that a script outside rlab reports through the SDK or the
MLflow-compatible API (an experiment found or made by name, its parameters, tags, name and end),
with no training process of rlab's own."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.experiments.models import Experiment, ExperimentKind
from webapp.projects.activity import Verb
from webapp.runs.ingestion import run_seen
from webapp.runs.models import TRACKED_TRANSITIONS, DatasetInput, Run, RunStatus
from webapp.runs.seed_groups import seed_group_of
from webapp.runs.services import run_create

logger = logging.getLogger(__name__)


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
        run.seed_group = seed_group_of(run.config)
        run.save(update_fields=["config", "seed_group"])
    run_seen(run_id=run_id)


def tracked_run_set_tags(*, run_id: int, tags: dict[str, str]) -> None:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        run.tracked_tags = {**run.tracked_tags, **tags}
        run.save(update_fields=["tracked_tags"])
    run_seen(run_id=run_id)


def tracked_run_rename(*, run_id: int, name: str) -> None:
    """A tracked run's name, as its script renames it (MLflow's update_run, or its run-name
    tag); a blank name is ignored."""
    name = name.strip()[:250]
    if name:
        Run.objects.filter(pk=run_id).update(name=name)


def tracked_run_finish(*, run_id: int, status: str, finished_at: datetime | None = None,
                       error_message: str = "") -> bool:
    """End a tracked run as its script reports: succeeded, failed or cancelled, from running or
    crashed (a script that was cut off from the server ends its run once it gets through).
    False if it had already ended otherwise."""
    if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        raise ValidationError(f"A run ends as succeeded, failed or cancelled, not {status!r}.")
    return _tracked_transition(run_id=run_id, to=status,
                               finished_at=finished_at or timezone.now(),
                               error_message=error_message[:10_000])


def tracked_run_reopen(*, run_id: int) -> bool:
    """Running again, for a script that resumes the run (MLflow's start_run(run_id=...),
    rlab.init(resume_run_id=...)) whatever its end: its end time and error are cleared. True if
    it is running now."""
    _tracked_transition(run_id=run_id, to=RunStatus.RUNNING, finished_at=None, error_message="",
                        heartbeat_at=timezone.now())
    return Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).exists()


def tracked_run_heartbeat(*, run_id: int) -> str | None:
    """The script of the run is alive: its heartbeat becomes now, and a run that had crashed
    (the script was cut off from the server for a while) runs again. Returns the run's status:
    another end stays, and tells the script the run takes no more data."""
    now = timezone.now()
    if not Run.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=now):
        _tracked_transition(run_id=run_id, to=RunStatus.RUNNING, sources=[RunStatus.CRASHED],
                            finished_at=None, error_message="", heartbeat_at=now)
    return Run.objects.filter(pk=run_id).values_list("status", flat=True).first()


def tracked_runs_crash_stale(*, now: datetime | None = None) -> list[int]:
    """Mark crashed the running tracked runs that nothing was heard from for
    RLAB_TRACKED_STALE_AFTER_SECONDS: no SDK heartbeat (every 30 s) and no write, so their
    script was killed or lost its machine. Returns their ids."""
    now = now or timezone.now()
    silent = settings.RLAB_TRACKED_STALE_AFTER_SECONDS
    cutoff = now - timedelta(seconds=silent)
    stale = Run.objects.filter(status=RunStatus.RUNNING, experiment__kind=ExperimentKind.TRACKED,
                               heartbeat_at__lt=cutoff)
    reason = (f"Nothing was heard from this run's script for {silent} s (no heartbeat and no "
              "data): it was killed or lost its machine. Resuming the run "
              "(rlab.init(resume_run_id=...), mlflow.start_run(run_id=...)) makes it run again.")
    crashed = [run_id for run_id in stale.values_list("pk", flat=True)
               if _tracked_transition(run_id=run_id, to=RunStatus.CRASHED, sources=[
                   RunStatus.RUNNING], silent_since=cutoff, finished_at=now,
                   error_message=reason)]
    for run_id in crashed:
        logger.warning("tracked run %s crashed: no sign of life for %s s", run_id, silent)
    return crashed


def tracked_run_log_inputs(*, run_id: int, datasets: list[dict[str, Any]]) -> None:
    """Add dataset references (DatasetInput's fields) to a tracked run's inputs (MLflow's
    log_input); one the run already has (its name and digest) is kept as it is, as in MLflow."""
    DatasetInput.objects.bulk_create([DatasetInput(run_id=run_id, **dataset)
                                      for dataset in datasets], ignore_conflicts=True)
    run_seen(run_id=run_id)


def _tracked_transition(*, run_id: int, to: str, sources: list[str] | None = None,
                        silent_since: datetime | None = None, **fields: Any) -> bool:
    """Move a tracked run to `to` from any of `sources` (by default every status
    TRACKED_TRANSITIONS allows it from), in one conditional UPDATE; with `silent_since`, only
    if its last heartbeat is older (a beat meanwhile keeps it). False if it did not move."""
    allowed = [status for status, targets in TRACKED_TRANSITIONS.items() if to in targets]
    runs = Run.objects.filter(pk=run_id, experiment__kind=ExperimentKind.TRACKED,
                              status__in=[s for s in sources or allowed if s in allowed])
    if silent_since is not None:
        runs = runs.filter(heartbeat_at__lt=silent_since)
    return runs.update(status=to, **fields) == 1
