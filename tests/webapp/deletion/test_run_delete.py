"""Deleting a run: who may, what goes (rows, folder, checkpoints), when it is refused, and that
files go only once the deletion has committed."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.webapp.lifecycle import (
    CHECKPOINT_BYTES,
    checkpoint_of,
    dataset_with_files,
    run_with_data,
)
from webapp.deletion import services as deletion
from webapp.projects.activity import Verb
from webapp.reviews.models import Activity, Annotation, Comment, RunStar, RunTag
from webapp.runs import ingestion, services
from webapp.runs.files import run_folder
from webapp.runs.models import Checkpoint, LogLine, MetricPoint, Rollout, Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.RLAB_RUN_DIR = tmp_path / "runs"
    settings.RLAB_DATASET_DIR = tmp_path / "datasets"


@pytest.fixture
def run(experiment, user):
    return run_with_data(experiment, user)


def delete(client, run, **headers):
    return client.post(reverse("deletion:run", args=[run.pk]), **headers)


def test_an_admin_deletes_a_run_with_its_rows_and_its_folder(
        signed_in, run, django_capture_on_commit_callbacks):
    folder = run_folder(run.pk, run.created_at)
    assert folder.is_dir()
    with django_capture_on_commit_callbacks(execute=True):
        response = delete(signed_in, run)
    assert response.status_code == 302
    assert response["Location"] == run.experiment.get_absolute_url()
    assert not Run.objects.filter(pk=run.pk).exists()
    for model in (MetricPoint, Rollout, LogLine, Checkpoint, Comment, RunStar, RunTag):
        assert not model.objects.filter(run_id=run.pk).exists(), model
    assert not Annotation.objects.exists()
    assert not folder.exists()


def test_the_deletion_is_in_the_projects_feed(signed_in, run, user):
    delete(signed_in, run)
    entry = Activity.objects.get(verb=Verb.DELETED)
    assert entry.project == run.experiment.project and entry.actor == user
    assert f"run {run}" in entry.detail and "2 checkpoints" in entry.detail
    assert not Activity.objects.filter(run_id=run.pk).exists()


def test_the_experiment_page_says_what_was_deleted(signed_in, run):
    page = signed_in.get(delete(signed_in, run)["Location"]).content.decode()
    assert f"Deleted {run.experiment.name} #{run.number}: 1 run, 2 checkpoints" in page


def test_a_member_deletes_a_run_they_launched(client, experiment, member_of):
    member = member_of("member")
    run = run_with_data(experiment, member)
    client.force_login(member)
    assert delete(client, run).status_code == 302
    assert not Run.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_an_admin_or_its_launcher_may_delete_a_run(client, run, member_of, role):
    client.force_login(member_of(role))
    assert client.get(reverse("deletion:run", args=[run.pk])).status_code == 403
    assert delete(client, run).status_code == 403
    assert Run.objects.filter(pk=run.pk).exists()
    assert run_folder(run.pk, run.created_at).is_dir()


def test_an_outsider_gets_404(client, run, other_user):
    client.force_login(other_user)
    assert client.get(reverse("deletion:run", args=[run.pk])).status_code == 404
    assert delete(client, run).status_code == 404


def test_the_run_page_offers_deletion_to_those_who_may(client, run, member_of):
    url = reverse("runs:detail", args=[run.pk])
    client.force_login(run.launched_by)
    assert 'id="delete-run"' in client.get(url).content.decode()
    client.force_login(member_of("member"))
    assert 'id="delete-run"' not in client.get(url).content.decode()


def test_the_confirmation_page_says_what_goes(signed_in, run):
    page = signed_in.get(reverse("deletion:run", args=[run.pk])).content.decode()
    assert 'id="plan-runs">1<' in page
    assert 'id="plan-checkpoints">2<' in page
    assert 'id="plan-points">6<' in page
    assert 'id="plan-rollouts">6<' in page
    assert f'id="plan-bytes">{2 * CHECKPOINT_BYTES // 1000}.0' in page  # 2.0 KB
    assert 'id="confirm-delete-button"' in page


def test_deleting_needs_the_csrf_token(run, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert delete(client, run).status_code == 403
    assert Run.objects.filter(pk=run.pk).exists()


def test_an_htmx_deletion_sends_the_page_to_the_experiment(signed_in, run):
    response = delete(signed_in, run, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response["HX-Redirect"] == run.experiment.get_absolute_url()


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING])
def test_an_active_run_must_be_cancelled_first(signed_in, experiment, user, status):
    run = run_with_data(experiment, user, status=status)
    page = signed_in.get(reverse("deletion:run", args=[run.pk])).content.decode()
    assert "cancel it first" in page
    assert 'id="confirm-delete-button"' not in page
    response = delete(signed_in, run)
    assert response.status_code == 422
    assert "cancel it first" in response.content.decode()
    assert Run.objects.filter(pk=run.pk, status=status).exists()
    assert run_folder(run.pk, run.created_at).is_dir()


@pytest.mark.parametrize("status", [RunStatus.CANCELLED, RunStatus.INTERRUPTED,
                                    RunStatus.FAILED])
def test_a_run_ended_from_outside_waits_until_its_worker_stopped_the_process(
        experiment, user, status):
    run = run_with_data(experiment, user, status=status, ended_ago=timedelta(seconds=1))
    with pytest.raises(ValidationError, match="may still be stopping the training process"):
        deletion.run_delete(run=run, user=user)
    # The worker's closing line, written once the training process has stopped.
    ingestion.logs_append(run_id=run.pk, lines=[
        (timezone.now(), "info", "worker", "Cancelled: the training process was stopped.")])
    deletion.run_delete(run=run, user=user)
    assert not Run.objects.filter(pk=run.pk).exists()


def test_a_run_ended_from_outside_long_enough_ago_needs_no_word_from_its_worker(
        experiment, user, settings):
    ended_ago = timedelta(seconds=settings.RLAB_HEARTBEAT_SECONDS
                          + settings.RLAB_CANCEL_GRACE_SECONDS + 21)
    run = run_with_data(experiment, user, status=RunStatus.CANCELLED, ended_ago=ended_ago)
    deletion.run_delete(run=run, user=user)
    assert not Run.objects.filter(pk=run.pk).exists()


def test_a_run_cancelled_before_a_worker_took_it_goes_at_once(experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    services.run_cancel(run=run, user=user)
    deletion.run_delete(run=run, user=user)
    assert not Run.objects.filter(pk=run.pk).exists()


def test_a_run_whose_checkpoint_an_active_run_resumes_from_is_kept(experiment, user):
    run = run_with_data(experiment, user, status=RunStatus.FAILED)
    resumed = services.run_resume(run=run, user=user)
    with pytest.raises(ValidationError, match=rf"{experiment.name} #{resumed.number} \(queued\) "
                                              r"loads a checkpoint that this deletes"):
        deletion.run_delete(run=run, user=user)
    assert Run.objects.filter(pk=run.pk).exists()


def test_a_run_whose_checkpoint_a_queued_run_names_in_its_config_is_kept(experiment, user):
    run = run_with_data(experiment, user)
    other = services.run_launch(experiment=experiment, user=user)
    Run.objects.filter(pk=other.pk).update(
        config={**other.config, "model": f"checkpoint:{checkpoint_of(run).pk}"})
    with pytest.raises(ValidationError, match="loads a checkpoint that this deletes"):
        deletion.run_delete(run=run, user=user)


def test_runs_that_resumed_from_or_evaluated_a_deleted_run_keep_their_own_rows(
        experiment, user):
    run = run_with_data(experiment, user, status=RunStatus.FAILED)
    resumed = services.run_resume(run=run, user=user)
    Run.objects.filter(pk=resumed.pk).update(status=RunStatus.SUCCEEDED,
                                             finished_at=timezone.now())
    evaluation = run_with_data(experiment, user, evaluated_checkpoint=checkpoint_of(run))
    deletion.run_delete(run=run, user=user)
    resumed.refresh_from_db()
    evaluation.refresh_from_db()
    assert resumed.resumed_from is None and evaluation.evaluated_checkpoint is None
    assert evaluation.metric_points.exists() and evaluation.checkpoints.count() == 2


def test_a_deletion_that_fails_removes_no_file(run, user, django_capture_on_commit_callbacks):
    folder = run_folder(run.pk, run.created_at)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            deletion.run_delete(run=run, user=user)
            raise RuntimeError("the transaction fails after the delete")
    assert callbacks == []
    assert Run.objects.filter(pk=run.pk).exists()
    assert folder.is_dir() and len(list(folder.rglob("model.safetensors"))) == 2


def test_a_folder_that_cannot_be_removed_is_logged_and_the_run_still_goes(
        experiment, user, caplog, django_capture_on_commit_callbacks):
    run = run_with_data(experiment, user, checkpoints=0)
    folder = run_folder(run.pk, run.created_at)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the run's folder should be")
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        deletion.run_delete(run=run, user=user)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert f"could not remove {folder}" in caplog.text


def test_only_the_runs_own_folder_is_removed(
        experiment, user, tmp_path, django_capture_on_commit_callbacks):
    run = run_with_data(experiment, user)
    kept = run_with_data(experiment, user)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "weights.bin").write_bytes(b"keep me")
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=99, path=str(outside))])
    with django_capture_on_commit_callbacks(execute=True):
        deletion.run_delete(run=run, user=user)
    assert (outside / "weights.bin").read_bytes() == b"keep me"
    assert run_folder(kept.pk, kept.created_at).is_dir()


def test_a_dataset_file_stays_while_a_dataset_names_it_and_goes_with_the_last_run(
        experiment, project, user, django_capture_on_commit_callbacks):
    dataset = dataset_with_files(project, user)
    first, second = (run_with_data(experiment, user, config={"dataset": str(
        dataset.normalized_path)}) for _ in range(2))
    with django_capture_on_commit_callbacks(execute=True):
        deletion.run_delete(run=first, user=user)
    assert dataset.normalized_path.exists()
    dataset.delete()  # the dataset goes, a run that trained on its file stays
    with django_capture_on_commit_callbacks(execute=True):
        deletion.run_delete(run=second, user=user)
    assert not dataset.normalized_path.exists()
