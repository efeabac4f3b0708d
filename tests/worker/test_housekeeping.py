"""Housekeeping runs in every worker's main process, whatever its pool is busy with: stale runs,
runs left by a killed incarnation of the worker, and queued runs the broker lost."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from tests.conftest import tiny_run_config
from tests.stack import launch_run, start_worker, wait_for_run, worker_name
from webapp.runs import services
from webapp.runs.models import Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _claimed_long_ago(project, user, tiny_model, worker: str) -> Run:
    """A run that `worker` claimed and then went silent an hour ago, as a dead worker leaves it."""
    run = launch_run(project, user, f"left by {worker}", tiny_run_config(tiny_model))
    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("cpu")  # its message: taken
    assert services.run_claim(run_id=run.pk, worker=worker)
    hour_ago = timezone.now() - timedelta(hours=1)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=hour_ago)
    return run


def test_a_dead_gpu_workers_run_is_failed_while_the_worker_trains_another(
        tmp_path, project, user, tiny_model):
    worker = start_worker(tmp_path, RLAB_HOUSEKEEPING_SECONDS="2")
    try:
        training = launch_run(project, user, "long", tiny_run_config(tiny_model, max_steps=100_000))
        wait_for_run(training, lambda r: r.progress_step >= 1, 120, worker)

        dead = _claimed_long_ago(project, user, tiny_model, "gpu-worker@lost-machine")
        found_at = time.monotonic()
        dead = wait_for_run(dead, lambda r: r.is_terminal, 15, worker)

        assert time.monotonic() - found_at < 2 + 5, "one housekeeping interval, and a margin"
        assert dead.status == RunStatus.FAILED
        assert "stopped responding" in dead.error_message
        training.refresh_from_db()
        assert training.status == RunStatus.RUNNING, "the run it trains is left alone"
    finally:
        worker.stop()


def test_a_run_a_killed_worker_left_is_interrupted_when_that_worker_starts_again(
        tmp_path, project, user, tiny_model):
    left = _claimed_long_ago(project, user, tiny_model, worker_name())
    worker = start_worker(tmp_path)
    try:
        left = wait_for_run(left, lambda r: r.is_terminal, 10, worker)
        assert left.status == RunStatus.INTERRUPTED
        assert "without shutting down" in left.error_message
        assert "Resume" in left.error_message
    finally:
        worker.stop()


def test_a_queued_run_whose_message_was_lost_is_sent_again_and_trains(
        tmp_path, project, user, tiny_model):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("cpu")  # tokens an earlier test's ending runs sent for its queued runs
    run = launch_run(project, user, "lost", tiny_run_config(tiny_model, max_steps=2))
    run.refresh_from_db()
    assert run.enqueued_at is not None, "the broker took it at launch"
    assert broker.llen("cpu") == 1
    assert services.runs_requeue(
        now=timezone.now() + timedelta(seconds=settings.RLAB_REQUEUE_AFTER_SECONDS + 1)) == 0, (
        "a run whose message is in its queue is not sent again, however long it waits")
    assert broker.llen("cpu") == 1

    broker.flushdb()  # a Redis without persistence restarted
    Run.objects.filter(pk=run.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    worker = start_worker(tmp_path, RLAB_HOUSEKEEPING_SECONDS="1")
    try:
        run = wait_for_run(run, lambda r: r.is_terminal, 120, worker)
        assert run.status == RunStatus.SUCCEEDED, run.error_message
        assert run.attempts == 1
        assert run.enqueued_at > timezone.now() - timedelta(minutes=5)
    finally:
        worker.stop()
