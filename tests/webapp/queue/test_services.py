"""A queued run's priority: who may change it, its bounds, and a run no longer queued; the
workers' reports; a project's limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from tests.webapp.queue.conftest import queued, running
from webapp.projects.services import project_limit_set
from webapp.queue.models import Worker
from webapp.queue.services import run_priority_set, worker_forget, worker_report
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def test_a_member_raises_the_priority_of_a_run_they_launched(experiment, member_of):
    member = member_of("member")
    run = queued(experiment, member)
    run_priority_set(run=run, user=member, priority=7)
    assert Run.objects.get(pk=run.pk).priority == 7


def test_a_member_may_not_change_another_members_run(experiment, user, member_of):
    run = queued(experiment, user)
    with pytest.raises(PermissionDenied):
        run_priority_set(run=run, user=member_of("member"), priority=7)
    assert Run.objects.get(pk=run.pk).priority == 0


def test_an_admin_changes_any_run_of_the_team(experiment, member_of):
    run = queued(experiment, member_of("member"))
    admin = member_of("admin", "boss")
    run_priority_set(run=run, user=admin, priority=-4)
    assert Run.objects.get(pk=run.pk).priority == -4


def test_a_viewer_changes_no_priority_not_even_of_a_run_they_launched(experiment, member_of):
    viewer = member_of("viewer")
    run = queued(experiment, viewer)  # launched while a member, say
    with pytest.raises(PermissionDenied):
        run_priority_set(run=run, user=viewer, priority=1)


@pytest.mark.parametrize("priority", [101, -101, 32767])
def test_a_priority_out_of_bounds_is_refused_with_the_bounds(experiment, user, priority):
    run = queued(experiment, user)
    with pytest.raises(ValidationError, match="between -100 and 100"):
        run_priority_set(run=run, user=user, priority=priority)


def test_a_run_no_longer_queued_keeps_its_priority_and_says_so(experiment, user):
    run = running(experiment, user)
    with pytest.raises(ValidationError, match="is running, no longer queued"):
        run_priority_set(run=run, user=user, priority=3)
    assert Run.objects.get(pk=run.pk).priority == 0


def test_a_worker_report_creates_then_updates_its_row(db):
    started = timezone.now() - timedelta(minutes=5)
    worker_report(name="celery@gpu-1", host="gpu-1", pid=10, queues=["gpu", "cpu"],
                  device="cuda: NVIDIA H100", slots=2, started_at=started)
    worker_report(name="celery@gpu-1", host="gpu-1", pid=11, queues=["gpu"],
                  device="cuda: NVIDIA H100", slots=2, started_at=started)
    worker = Worker.objects.get()
    assert (worker.pid, worker.queues, worker.slots) == (11, ["gpu"], 2)
    assert worker.heartbeat_at > started
    worker_forget(name="celery@gpu-1")
    assert not Worker.objects.exists()


def test_only_an_admin_sets_a_projects_limit(experiment, member_of):
    with pytest.raises(PermissionDenied):
        project_limit_set(project=experiment.project, user=member_of("member"),
                          max_concurrent_runs=2)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_limit_out_of_bounds_is_refused(experiment, user, limit):
    with pytest.raises(ValidationError, match="between 1 and 1000"):
        project_limit_set(project=experiment.project, user=user, max_concurrent_runs=limit)
    experiment.project.refresh_from_db()
    assert experiment.project.max_concurrent_runs is None
