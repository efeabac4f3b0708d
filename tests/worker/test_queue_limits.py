"""The queue with real Celery workers: a project's limit holds across two workers, and a later
run of higher priority starts first."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_run_config
from tests.stack import launch_run, start_worker, wait_for_run, worker_name
from webapp.projects.services import project_limit_set
from webapp.queue.services import run_priority_set
from webapp.runs.models import Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_limit_of_one_holds_with_two_workers_and_every_run_finishes(
        tmp_path, project, user, tiny_model):
    project_limit_set(project=project, user=user, max_concurrent_runs=1)
    first = start_worker(tmp_path, name="first")
    second = start_worker(tmp_path, name="second", hostname=f"second-{worker_name()}")
    try:
        runs = [launch_run(project, user, f"limited-{i}", tiny_run_config(tiny_model))
                for i in range(3)]
        for run in runs:
            wait_for_run(run, lambda r: r.is_terminal, 240, second)
    finally:
        first.stop()
        second.stop()
    runs = sorted(Run.objects.filter(pk__in=[r.pk for r in runs]), key=lambda r: r.started_at)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3, [r.error_message for r in runs]
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.finished_at <= later.started_at, "two of the project's runs overlapped"
    assert all(r.attempts == 1 for r in runs)


def test_a_later_run_of_higher_priority_is_claimed_first_by_a_real_worker(
        tmp_path, project, user, tiny_model):
    worker = start_worker(tmp_path)
    try:
        blocker = launch_run(project, user, "blocker", tiny_run_config(tiny_model, max_steps=4))
        wait_for_run(blocker, lambda r: r.status == RunStatus.RUNNING, 120, worker)
        waiting = launch_run(project, user, "waiting", tiny_run_config(tiny_model))
        urgent = launch_run(project, user, "urgent", tiny_run_config(tiny_model))
        run_priority_set(run=urgent, user=user, priority=5)
        for run in (blocker, waiting, urgent):
            wait_for_run(run, lambda r: r.is_terminal, 240, worker)
    finally:
        worker.stop()
    waiting.refresh_from_db()
    urgent.refresh_from_db()
    assert waiting.status == urgent.status == RunStatus.SUCCEEDED
    assert urgent.started_at < waiting.started_at, "the later, higher-priority run went first"
