"""Writes for the queue: a queued run's priority, the workers' reports of themselves, and waking
the queues when a project's limit is raised."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from webapp.projects.models import Project
from webapp.queue.models import Worker
from webapp.runs.models import Run, RunStatus
from webapp.runs.services import queues_wake, runs_holding_places
from webapp.teams.models import Role, role_allows
from webapp.teams.selectors import role_in_team

# A queued run's priority: higher runs first among the queued runs of its queue; ties by age.
PRIORITY_MIN, PRIORITY_MAX = -100, 100


def run_priority_allowed(*, run: Run, role: str | None, user) -> bool:
    """Whether a user whose role in the run's team is `role` may change its priority: an admin
    any run of the team, a member the runs they launched."""
    if role is None:
        return False
    return role_allows(role, Role.ADMIN) or (
        role_allows(role, Role.MEMBER) and run.launched_by_id == user.pk)


def run_priority_set(*, run: Run, user, priority: int) -> Run:
    """Set the queued `run`'s priority. PermissionDenied for a user who may not
    (run_priority_allowed); ValidationError for a priority out of bounds, or a run that is not
    queued any more (a worker took it, or it was cancelled)."""
    if not run_priority_allowed(run=run, role=role_in_team(user, run.experiment.project.team_id),
                                user=user):
        raise PermissionDenied("Only an admin of the team, or the member who launched the "
                               "run, may change its priority.")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError("A priority is a whole number.")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValidationError(f"A priority is between {PRIORITY_MIN} and {PRIORITY_MAX}; "
                              f"{priority} is not.")
    # Conditional: a worker may claim the run at this very moment.
    if not Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(priority=priority):
        run.refresh_from_db(fields=["status"])
        raise ValidationError(f"Run {run} is {run.status}, no longer queued: only a queued "
                              "run's priority can change.")
    run.priority = priority
    return run


def worker_report(*, name: str, host: str, pid: int | None, queues: list[str], device: str,
                  slots: int, started_at: datetime, devices: Sequence[str] = ()) -> Worker:
    """Record that the worker `name` is up, with what it consumes and has (`devices`: those it
    gives runs, worker.devices); its heartbeat."""
    worker, _ = Worker.objects.update_or_create(name=name[:200], defaults={
        "host": host[:200], "pid": pid, "queues": sorted(queues), "device": device[:100],
        "slots": max(slots, 1), "devices": [str(d)[:200] for d in devices],
        "started_at": started_at, "heartbeat_at": timezone.now()})
    return worker


def worker_forget(*, name: str) -> None:
    """The worker `name` shut down cleanly: it is no longer listed."""
    Worker.objects.filter(name=name).delete()


def project_queue_wake(*, project: Project) -> None:
    """Let the project's waiting runs start after its limit was raised or cleared: one token
    per place now free (their own tokens were dropped while the limit held them)."""
    waiting = Run.objects.filter(experiment__project=project, status=RunStatus.QUEUED).count()
    if project.max_concurrent_runs is None:
        free = waiting
    else:
        active = runs_holding_places().filter(experiment__project=project).count()
        free = min(waiting, project.max_concurrent_runs - active)
    queues_wake(per_queue=free)
