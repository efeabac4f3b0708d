from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from webapp.runs import services
from webapp.runs.models import Checkpoint, LogLine, MetricPoint, Rollout, Run, RunStatus

pytestmark = pytest.mark.django_db


def test_launch_creates_a_queued_run_with_a_config_snapshot(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    experiment.config["max_steps"] = 99
    experiment.save()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.number == 1
    assert run.config["max_steps"] == 3


def test_launch_numbers_runs_within_the_experiment(experiment, user):
    numbers = [services.run_launch(experiment=experiment, user=user).number for _ in range(3)]
    assert numbers == [1, 2, 3]


def test_launch_enqueues_the_run_on_redis_after_commit(experiment, user,
                                                       django_capture_on_commit_callbacks):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("cpu")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.run_launch(experiment=experiment, user=user)
    assert broker.llen("cpu") == 0, "nothing may be enqueued before the commit"
    for callback in callbacks:
        callback()
    assert broker.llen("cpu") == 1
    broker.delete("cpu")


def test_launch_of_an_invalid_config_is_refused(experiment, user):
    experiment.config["group_size"] = 1
    experiment.save()
    with pytest.raises(ValidationError, match="group_size"):
        services.run_launch(experiment=experiment, user=user)
    assert not Run.objects.exists()


def test_a_run_is_claimed_once(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    assert services.run_claim(run_id=run.pk, worker="w1")
    assert not services.run_claim(run_id=run.pk, worker="w2")
    run.refresh_from_db()
    assert (run.status, run.worker, run.attempts) == (RunStatus.STARTING, "w1", 1)


def test_status_moves_only_along_allowed_transitions(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    assert not services.run_succeed(run_id=run.pk), "queued cannot succeed"
    services.run_claim(run_id=run.pk, worker="w")
    assert services.run_mark_running(run_id=run.pk, device="cpu", total_steps=3)
    assert services.run_succeed(run_id=run.pk)
    assert not services.run_fail(run_id=run.pk, error_message="late"), "terminal is final"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.finished_at is not None
    assert run.error_message == ""


def test_cancel_of_a_finished_run_changes_nothing(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    services.run_fail(run_id=run.pk, error_message="boom")
    assert not services.run_cancel(run=run, user=user)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_heartbeat_reports_a_cancel(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    assert services.run_heartbeat(run_id=run.pk) == RunStatus.STARTING
    services.run_cancel(run=run, user=user)
    assert services.run_heartbeat(run_id=run.pk) == RunStatus.CANCELLED


def test_stale_runs_are_failed_with_an_explanation(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    fresh = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=fresh.pk, worker="w")
    later = timezone.now() + timedelta(seconds=settings.RLAB_STALE_AFTER_SECONDS + 1)
    Run.objects.filter(pk=fresh.pk).update(heartbeat_at=later)
    assert services.runs_fail_stale(now=later) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "stopped responding" in run.error_message


def test_replayed_metrics_are_stored_once(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    batch = [services.MetricSample(key="reward/mean", step=s, value=s / 10, wall_time=now)
             for s in range(5)]
    services.metrics_ingest(run_id=run.pk, points=batch)
    services.metrics_ingest(run_id=run.pk, points=batch)
    assert MetricPoint.objects.filter(run=run).count() == 5


def test_rollouts_and_log_lines_are_stored(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    items = [{"prompt": "2+2?", "completion": "4", "reward": 1.0, "rewards": {"correct": 1.0},
              "advantage": 0.5, "group": 0, "sample_index": i, "completion_tokens": 1,
              "truncated": False} for i in range(2)]
    services.rollouts_ingest(run_id=run.pk, step=1, items=items)
    services.rollouts_ingest(run_id=run.pk, step=1, items=items)
    services.logs_append(run_id=run.pk, lines=[(timezone.now(), "info", "trainer", "hello")])
    assert Rollout.objects.filter(run=run).count() == 2
    assert LogLine.objects.get(run=run).message == "hello"


def test_a_replayed_checkpoint_batch_is_stored_once(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    batch = [services.CheckpointSaved(step=2, path="/runs/run-1/checkpoint-2"),
             services.CheckpointSaved(step=3, path="/runs/run-1/checkpoint-3", final=True)]
    services.checkpoints_ingest(run_id=run.pk, checkpoints=batch)
    services.checkpoints_ingest(run_id=run.pk, checkpoints=batch)
    stored = Checkpoint.objects.filter(run=run).values_list("step", "path", "final")
    assert list(stored) == [(3, "/runs/run-1/checkpoint-3", True),
                            (2, "/runs/run-1/checkpoint-2", False)]


def test_a_checkpoint_step_reported_again_keeps_the_later_report(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    services.checkpoints_ingest(run_id=run.pk, checkpoints=[
        services.CheckpointSaved(step=4, path="/a/checkpoint-4")])
    services.checkpoints_ingest(run_id=run.pk, checkpoints=[
        services.CheckpointSaved(step=4, path="/b/checkpoint-4"),
        services.CheckpointSaved(step=4, path="/c/checkpoint-4", final=True)])
    checkpoint = Checkpoint.objects.get(run=run)
    assert (checkpoint.path, checkpoint.final) == ("/c/checkpoint-4", True)


def test_eta_follows_the_pace_of_finished_steps(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    run.running_since = now - timedelta(seconds=30)
    run.progress_step, run.progress_total = 3, 9
    assert run.eta_seconds(now) == pytest.approx(60)
