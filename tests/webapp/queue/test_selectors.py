"""Why a queued run waits, and what of the installation's queue a user is shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.queue.conftest import queued, running
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_limit_set
from webapp.queue.models import Worker
from webapp.queue.selectors import queue_sections, run_wait, running_runs, worker_rows
from webapp.queue.services import worker_report
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def report(name: str, queues: list[str], slots: int = 1, ago: float = 0) -> Worker:
    worker = worker_report(name=name, host=name.split("@")[-1], pid=1, queues=queues,
                           device="cpu", slots=slots, started_at=timezone.now())
    Worker.objects.filter(pk=worker.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=ago))
    return worker


def test_a_run_the_broker_never_took_waits_for_the_broker(experiment, user):
    report("celery@a", ["cpu"])
    run = queued(experiment, user)
    Run.objects.filter(pk=run.pk).update(enqueued_at=None)
    run.refresh_from_db()
    assert run_wait(run).startswith("Waiting for the broker")


def test_a_run_whose_queue_no_live_worker_consumes_says_so(experiment, user):
    report("celery@cpu-only", ["cpu"])
    report("celery@gone", ["gpu"], ago=3600)
    run = queued(experiment, user, queue="gpu")
    assert run_wait(run) == "No worker consumes queue gpu: start one with -Q gpu."


def test_a_run_held_by_its_projects_limit_says_so(experiment, user):
    report("celery@a", ["cpu"], slots=4)
    project_limit_set(project=experiment.project, user=user, max_concurrent_runs=1)
    running(experiment, user, worker="celery@a")
    run = queued(experiment, user)
    assert run_wait(run).startswith("The project's limit of 1 at once is reached")


def test_a_run_held_by_a_registered_check_gives_its_reason(experiment, user, held_by_check):
    report("celery@a", ["cpu"])
    held = experiment_create(project=experiment.project, author=user, name="held",
                             description="", config=experiment.config)
    assert run_wait(queued(held, user)) == "The sweep held runs at most 0 at once."


def test_a_run_behind_busy_workers_says_all_are_busy(experiment, second_experiment, user):
    report("celery@a", ["cpu", "gpu"])
    report("celery@b", ["cpu"])
    running(second_experiment, user, worker="celery@a")
    running(second_experiment, user, worker="celery@b")
    run = queued(experiment, user)
    assert run_wait(run) == "All 2 workers of this queue are busy (2 slots)."


def test_a_run_a_free_worker_may_take_has_no_reason(experiment, user):
    report("celery@a", ["cpu"], slots=2)
    running(experiment, user, worker="celery@a")
    assert run_wait(queued(experiment, user)) is None


def test_other_teams_queued_runs_are_counted_but_never_listed(
        experiment, other_experiment, user, other_user):
    queued(other_experiment, other_user, age=50)
    mine = queued(experiment, user, age=40)
    queued(other_experiment, other_user, age=30, priority=9)
    (cpu,) = queue_sections(user)
    assert (cpu.name, cpu.total, cpu.hidden) == ("cpu", 3, 2)
    assert [(e.run.pk, e.position) for e in cpu.entries] == [(mine.pk, 3)]


def test_a_user_sees_the_running_runs_of_their_teams_only(
        experiment, other_experiment, user, other_user):
    mine = running(experiment, user, worker="celery@a")
    running(other_experiment, other_user, worker="celery@a")
    assert running_runs(user) == ([mine], 1)
    report("celery@a", ["cpu"], slots=2)
    (row,) = worker_rows(user)
    assert (row.runs, row.hidden_runs, row.silent) == ([mine], 1, False)


def test_a_worker_that_missed_several_reports_is_silent(user):
    report("celery@quiet", ["cpu"], ago=3600)
    (row,) = worker_rows(user)
    assert row.silent
