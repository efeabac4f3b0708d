from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from webapp.projects.activity import Verb
from webapp.reviews.models import Activity
from webapp.runs import ingestion, services
from webapp.runs.files import run_folder
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
    batch = [ingestion.MetricSample(key="reward/mean", step=s, value=s / 10, wall_time=now)
             for s in range(5)]
    assert ingestion.metrics_ingest(run_id=run.pk, points=batch) == 5
    assert ingestion.metrics_ingest(run_id=run.pk, points=batch) == 5
    assert MetricPoint.objects.filter(run=run).count() == 5


# A step's metrics go in one INSERT of arrays; a batch of more points is COPYed.
BATCH_SIZES = pytest.mark.parametrize("padding", [0, ingestion.SMALL_METRIC_BATCH],
                                      ids=["small batch", "large batch"])


@BATCH_SIZES
def test_a_point_logged_again_later_replaces_the_stored_one(experiment, user, padding):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    later = now + timedelta(seconds=1)
    ingestion.metrics_ingest(run_id=run.pk, points=[("loss", s, 1.0, now) for s in range(3)])

    # Steps 1-2 again, later, with other values; steps 3-4 new, step 4 twice in the batch
    # itself (the later point wins); step 0 again but older than the stored one.
    overlapping = [("loss", s, 2.0, later) for s in (1, 2, 3, 4)] + [
        ("loss", 4, 3.0, later + timedelta(seconds=1)), ("loss", 0, 9.0, now - timedelta(1))]
    pad = [("pad", s, 0.0, now) for s in range(padding)]
    ingestion.metrics_ingest(run_id=run.pk,
                            points=[*overlapping, ("k" * 300, 0, 5.0, now), *pad])

    stored = dict(MetricPoint.objects.filter(run=run, key="loss").values_list("step", "value"))
    assert stored == {0: 1.0, 1: 2.0, 2: 2.0, 3: 2.0, 4: 3.0}
    assert MetricPoint.objects.get(run=run, step=4, key="loss").wall_time == later + timedelta(
        seconds=1)
    assert MetricPoint.objects.get(run=run, step=0, value=5.0).key == "k" * 250


@BATCH_SIZES
def test_points_at_one_time_keep_the_greater_value_as_mlflow_reports(experiment, user, padding):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    pad = [("pad", s, 0.0, now) for s in range(padding)]
    ingestion.metrics_ingest(run_id=run.pk, points=[("a", 0, 2.0, now), ("a", 0, 1.0, now),
                                                   ("b", 0, 1.0, now), *pad])
    ingestion.metrics_ingest(run_id=run.pk, points=[("b", 0, 3.0, now), ("b", 0, -1.0, now),
                                                   *pad])
    stored = dict(MetricPoint.objects.filter(run=run, step=0).exclude(key="pad").values_list(
        "key", "value"))
    assert stored == {"a": 2.0, "b": 3.0}


@BATCH_SIZES
def test_a_replayed_batch_rewrites_no_row(experiment, user, padding):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    batch = [("loss", s, s / 10, now) for s in range(3)] + [
        ("pad", s, 0.0, now) for s in range(padding)]
    ingestion.metrics_ingest(run_id=run.pk, points=batch)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ctid::text FROM {MetricPoint._meta.db_table} WHERE run_id = %s "
                       "ORDER BY key, step", [run.pk])
        before = cursor.fetchall()
        ingestion.metrics_ingest(run_id=run.pk, points=batch)
        cursor.execute(f"SELECT ctid::text FROM {MetricPoint._meta.db_table} WHERE run_id = %s "
                       "ORDER BY key, step", [run.pk])
        assert cursor.fetchall() == before, "no row was updated"


@BATCH_SIZES
def test_times_at_the_edges_of_the_calendar_are_stored_exactly(experiment, user, padding):
    run = services.run_launch(experiment=experiment, user=user)
    # Offsets Postgres does not read in text (beyond ±15:59), near both ends of what a datetime
    # holds in UTC.
    times = [datetime(1, 1, 1, 23, tzinfo=dt_timezone(timedelta(hours=20))),
             datetime(9999, 12, 31, 1, tzinfo=dt_timezone(timedelta(hours=-22))),
             datetime(2026, 12, 6, 9, 30, 1, 123456, tzinfo=dt_timezone(-timedelta(hours=17,
                                                                                  minutes=7)))]
    pad = [("pad", s, 0.0, times[2]) for s in range(padding)]
    ingestion.metrics_ingest(run_id=run.pk, points=[
        *(("edge", step, 1.0, time) for step, time in enumerate(times)), *pad])
    stored = MetricPoint.objects.filter(run=run, key="edge").order_by("step")
    assert list(stored.values_list("wall_time", flat=True)) == times


@BATCH_SIZES
def test_whole_numbers_among_the_values_are_stored_as_numbers(experiment, user, padding):
    # JSON gives 1 for 1.0, and a script may log an int or a numpy float beside a float.
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    pad = [("pad", s, 0.0, now) for s in range(padding)]
    ingestion.metrics_ingest(run_id=run.pk, points=[("n", 0, 1, now), ("n", 1, 2.5, now),
                                                   ("n", 2, True, now), *pad])
    stored = MetricPoint.objects.filter(run=run, key="n").order_by("step")
    assert list(stored.values_list("value", flat=True)) == [1.0, 2.5, 1.0]


@pytest.mark.parametrize("ended_by", ["its worker starting again", "the stale-run check"])
def test_a_dead_workers_run_records_the_checkpoints_left_in_its_folder_and_resumes(
        experiment, user, tmp_path, settings, ended_by):
    # The worker relayed checkpoint 1, then lagged and died while training saved 2 and 3 and
    # deleted 1 (keep_checkpoints=2): without the folders' checkpoints, nothing could resume.
    settings.RLAB_RUN_DIR = str(tmp_path)
    run = services.run_launch(experiment=experiment, user=user)
    assert services.run_claim(run_id=run.pk, worker="celery@lost")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING,
                                         heartbeat_at=timezone.now() - timedelta(hours=1))
    folder = run_folder(run.pk, run.created_at)
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=1, path=str(folder / "checkpoint-1"))])
    for name in ("checkpoint-2", "checkpoint-3", ".checkpoint-4-k2j1", "checkpoint-best"):
        (folder / name).mkdir(parents=True)
    (folder / "checkpoint-9").write_text("a file, not a checkpoint")

    if ended_by == "its worker starting again":
        assert services.runs_interrupt(worker="celery@lost", reason="killed") == [run.pk]
    else:
        assert services.runs_fail_stale() == 1
    run.refresh_from_db()

    assert dict(run.checkpoints.values_list("step", "path")) == {
        1: str(folder / "checkpoint-1"), 2: str(folder / "checkpoint-2"),
        3: str(folder / "checkpoint-3")}
    newest = run.checkpoint_to_resume()  # 3 is the last step: a run resumes before it
    assert newest.step == 2
    resumed = services.run_resume(run=run, user=user)
    assert resumed.config["resume_from"] == f"checkpoint:{newest.pk}"


def test_rollouts_and_log_lines_are_stored(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    items = [{"prompt": "2+2?", "completion": "4", "reward": 1.0, "rewards": {"correct": 1.0},
              "advantage": 0.5, "group": 0, "sample_index": i, "completion_tokens": 1,
              "truncated": False} for i in range(2)]
    ingestion.rollouts_ingest(run_id=run.pk, step=1, items=items)
    ingestion.rollouts_ingest(run_id=run.pk, step=1, items=items)
    ingestion.logs_append(run_id=run.pk, lines=[(timezone.now(), "info", "trainer", "hello")])
    assert Rollout.objects.filter(run=run).count() == 2
    assert LogLine.objects.get(run=run).message == "hello"


def test_a_replayed_checkpoint_batch_is_stored_once(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    batch = [ingestion.CheckpointSaved(step=2, path="/runs/run-1/checkpoint-2"),
             ingestion.CheckpointSaved(step=3, path="/runs/run-1/checkpoint-3", final=True)]
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=batch)
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=batch)
    stored = Checkpoint.objects.filter(run=run).values_list("step", "path", "final")
    assert list(stored) == [(3, "/runs/run-1/checkpoint-3", True),
                            (2, "/runs/run-1/checkpoint-2", False)]


def test_a_checkpoint_step_reported_again_keeps_the_later_report(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=4, path="/a/checkpoint-4")])
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=4, path="/b/checkpoint-4"),
        ingestion.CheckpointSaved(step=4, path="/c/checkpoint-4", final=True)])
    checkpoint = Checkpoint.objects.get(run=run)
    assert (checkpoint.path, checkpoint.final) == ("/c/checkpoint-4", True)


def test_eta_follows_the_pace_of_finished_steps(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    now = timezone.now()
    run.running_since = now - timedelta(seconds=30)
    run.progress_step, run.progress_total = 3, 9
    assert run.eta_seconds(now) == pytest.approx(60)


def _ended_run(experiment, user, status: str) -> Run:
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    services.run_transition(run_id=run.pk, to=status)
    run.refresh_from_db()
    return run


def _checkpoint(run: Run, step: int, folder, *, on_disk: bool = True) -> Checkpoint:
    path = folder / f"run-{run.pk}" / f"checkpoint-{step}"
    if on_disk:
        path.mkdir(parents=True)
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=step, path=str(path))])
    return Checkpoint.objects.get(run=run, step=step)


@pytest.mark.parametrize("status", [RunStatus.CANCELLED, RunStatus.FAILED])
def test_resume_continues_the_run_from_its_newest_checkpoint_on_disk(experiment, user,
                                                                     other_user, tmp_path,
                                                                     status):
    experiment.config["max_steps"] = 10
    experiment.save()
    run = _ended_run(experiment, user, status)
    _checkpoint(run, 1, tmp_path)
    newest_on_disk = _checkpoint(run, 2, tmp_path)
    _checkpoint(run, 3, tmp_path, on_disk=False)
    experiment.config["max_steps"] = 99
    experiment.save()

    resumed = services.run_resume(run=run, user=other_user)

    resumed.refresh_from_db()
    assert (resumed.number, resumed.status, resumed.launched_by) == (2, RunStatus.QUEUED,
                                                                     other_user)
    assert resumed.experiment == experiment and resumed.resumed_from == newest_on_disk
    assert resumed.config == {**run.config, "resume_from": f"checkpoint:{newest_on_disk.pk}"}
    assert resumed.config["max_steps"] == 10, "the old run's config, not the experiment's"
    activity = Activity.objects.get(run=resumed)
    assert (activity.verb, activity.actor, activity.detail) == (
        Verb.RESUMED, other_user, "from #1 at step 2")


def test_resume_enqueues_the_new_run_on_redis_after_commit(experiment, user, tmp_path,
                                                           django_capture_on_commit_callbacks):
    run = _ended_run(experiment, user, RunStatus.CANCELLED)
    _checkpoint(run, 1, tmp_path)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("cpu")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.run_resume(run=run, user=user)
    assert broker.llen("cpu") == 0, "nothing may be enqueued before the commit"
    for callback in callbacks:
        callback()
    assert broker.llen("cpu") == 1
    broker.delete("cpu")


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.RUNNING, RunStatus.QUEUED])
def test_resume_of_a_run_that_did_not_fail_or_get_cancelled_is_refused(experiment, user,
                                                                       tmp_path, status):
    run = services.run_launch(experiment=experiment, user=user)
    if status != RunStatus.QUEUED:
        services.run_claim(run_id=run.pk, worker="w")
        services.run_transition(run_id=run.pk, to=status)
        run.refresh_from_db()
    _checkpoint(run, 1, tmp_path)
    with pytest.raises(ValidationError,
                       match=f"Only a failed, cancelled or interrupted run.*is {status}"):
        services.run_resume(run=run, user=user)
    assert Run.objects.count() == 1


def test_resume_of_a_run_without_checkpoints_is_refused(experiment, user):
    run = _ended_run(experiment, user, RunStatus.FAILED)
    with pytest.raises(ValidationError, match="saved no checkpoint.*checkpoint_every"):
        services.run_resume(run=run, user=user)
    assert Run.objects.count() == 1


def test_resume_when_the_checkpoint_folders_are_gone_is_refused(experiment, user, tmp_path):
    run = _ended_run(experiment, user, RunStatus.FAILED)
    _checkpoint(run, 1, tmp_path, on_disk=False)
    _checkpoint(run, 2, tmp_path, on_disk=False)
    with pytest.raises(ValidationError, match="no checkpoint folder left"):
        services.run_resume(run=run, user=user)
    assert Run.objects.count() == 1


def test_resume_from_the_last_step_is_refused(experiment, user, tmp_path):
    run = _ended_run(experiment, user, RunStatus.FAILED)
    _checkpoint(run, 3, tmp_path)  # max_steps: nothing is left to train
    with pytest.raises(ValidationError, match="no checkpoint folder left"):
        services.run_resume(run=run, user=user)


def test_resume_of_a_config_that_no_longer_parses_names_the_setting(experiment, user,
                                                                    tmp_path):
    run = _ended_run(experiment, user, RunStatus.CANCELLED)
    Run.objects.filter(pk=run.pk).update(config={**run.config, "warp_factor": 9})
    run.refresh_from_db()
    _checkpoint(run, 1, tmp_path)
    with pytest.raises(ValidationError, match="warp_factor"):
        services.run_resume(run=run, user=user)
