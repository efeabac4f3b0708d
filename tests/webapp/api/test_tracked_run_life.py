"""A tracked run's life past its start: its script heartbeats (and every write counts), a run
nothing is heard from crashes, and a crashed or ended run runs again when its script reports or
resumes it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from webapp.api.tokens import token_create
from webapp.deletion.services import run_delete
from webapp.runs import ingestion, services, tracking
from webapp.runs.models import DatasetInput, Run, RunStatus
from worker.housekeeping import Housekeeper

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user):
    token = token_create(user=user, name="script")[1]

    def call(path: str, body=None):
        return Client().post(path, json.dumps(body or {}), content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})

    return call


@pytest.fixture
def tracked(project, user) -> Run:
    return tracking.tracked_run_create(
        experiment=tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                             name="script"), user=user)


def silent_since(run: Run, seconds: float) -> None:
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(
        seconds=seconds))


def test_a_heartbeat_keeps_a_tracked_run_from_crashing(api, tracked, settings):
    silent_since(tracked, settings.RLAB_TRACKED_STALE_AFTER_SECONDS - 5)
    assert api(f"/api/runs/{tracked.pk}/heartbeat").json()["status"] == "running"
    silent_since_beat = timezone.now() - Run.objects.get(pk=tracked.pk).heartbeat_at
    assert silent_since_beat < timedelta(seconds=5)

    assert tracking.tracked_runs_crash_stale(
        now=timezone.now() + timedelta(seconds=settings.RLAB_TRACKED_STALE_AFTER_SECONDS - 10)
    ) == []


@pytest.mark.django_db(transaction=True)  # housekeeping closes its connection after a pass
def test_a_tracked_run_nothing_is_heard_from_crashes(tracked, settings, signed_in, user):
    silent_since(tracked, settings.RLAB_TRACKED_STALE_AFTER_SECONDS + 1)
    Housekeeper(worker_name="housekeeping-test").run_once()

    tracked.refresh_from_db()
    assert tracked.status == RunStatus.CRASHED and tracked.is_terminal
    assert tracked.finished_at is not None
    assert f"{settings.RLAB_TRACKED_STALE_AFTER_SECONDS} s" in tracked.error_message
    page = signed_in.get(tracked.get_absolute_url()).content.decode()
    assert 'class="status status-crashed"' in page
    token = token_create(user=user, name="reader")[1]
    listed = Client().get("/api/runs?status=crashed",
                          headers={"Authorization": f"Bearer {token}"}).json()
    assert [run["id"] for run in listed["items"]] == [tracked.pk]


def test_the_crash_rule_leaves_launched_runs_to_their_own(tracked, experiment, user, settings):
    launched = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=launched.pk, worker="w")
    Run.objects.filter(pk=launched.pk).update(status=RunStatus.RUNNING)
    for run in (tracked, launched):
        silent_since(run, settings.RLAB_STALE_AFTER_SECONDS + 1)

    assert tracking.tracked_runs_crash_stale() == []  # not silent long enough for a script
    assert services.runs_fail_stale() == 1
    assert Run.objects.get(pk=tracked.pk).status == RunStatus.RUNNING
    assert Run.objects.get(pk=launched.pk).status == RunStatus.FAILED


def test_a_crashed_runs_script_reporting_again_runs_it_again(api, tracked, settings):
    silent_since(tracked, settings.RLAB_TRACKED_STALE_AFTER_SECONDS + 1)
    assert tracking.tracked_runs_crash_stale() == [tracked.pk]

    assert api(f"/api/runs/{tracked.pk}/heartbeat").json()["status"] == "running"
    tracked.refresh_from_db()
    assert (tracked.finished_at, tracked.error_message) == (None, "")

    silent_since(tracked, settings.RLAB_TRACKED_STALE_AFTER_SECONDS + 1)
    assert tracking.tracked_runs_crash_stale() == [tracked.pk]
    assert api(f"/api/runs/{tracked.pk}/finish").json()["status"] == "succeeded"


def test_a_write_counts_as_a_heartbeat_at_most_every_interval(tracked):
    now = timezone.now()
    silent_since(tracked, 60)
    ingestion.metrics_ingest(run_id=tracked.pk, points=[("loss", 0, 1.0, now)])
    beat = Run.objects.get(pk=tracked.pk).heartbeat_at
    assert beat >= now

    ingestion.metrics_ingest(run_id=tracked.pk, points=[("loss", 1, 1.0, now)])
    assert Run.objects.get(pk=tracked.pk).heartbeat_at == beat, "no write: one was recent"


def test_an_ended_tracked_run_is_resumed_and_ends_again(api, tracked):
    assert api(f"/api/runs/{tracked.pk}/finish", {"status": "failed"}).status_code == 200
    assert api(f"/api/runs/{tracked.pk}/heartbeat").status_code == 409

    resumed = api(f"/api/runs/{tracked.pk}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert resumed.json()["finished_at"] is None
    assert api(f"/api/runs/{tracked.pk}/resume").json()["status"] == "running"
    assert api(f"/api/runs/{tracked.pk}/finish").json()["status"] == "succeeded"


def test_a_viewer_cannot_resume_a_run(tracked, member_of):
    token = token_create(user=member_of("viewer"), name="viewer")[1]
    tracking.tracked_run_finish(run_id=tracked.pk, status=RunStatus.SUCCEEDED)
    response = Client().post(f"/api/runs/{tracked.pk}/resume", "{}",
                             content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert Run.objects.get(pk=tracked.pk).status == RunStatus.SUCCEEDED


def test_a_crashed_run_is_deleted_with_its_dataset_inputs(tracked, user, settings):
    tracking.tracked_run_log_inputs(run_id=tracked.pk, datasets=[
        {"name": "gsm8k", "digest": "abc", "source_type": "local", "source": "{}",
         "tags": {"mlflow.data.context": "training"}}])
    silent_since(tracked, settings.RLAB_TRACKED_STALE_AFTER_SECONDS + 1)
    assert tracking.tracked_runs_crash_stale() == [tracked.pk]

    run_delete(run=Run.objects.get(pk=tracked.pk), user=user)

    assert not Run.objects.filter(pk=tracked.pk).exists()
    assert not DatasetInput.objects.exists()
