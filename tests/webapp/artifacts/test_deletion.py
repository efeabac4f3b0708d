"""Deleting a run, an experiment or a project removes its artifacts and its logged models'
files from the store, once the deletion has committed; a project's disk use counts them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from webapp.artifacts.models import Artifact, LoggedModel
from webapp.artifacts.services import artifact_upload, logged_model_create
from webapp.deletion import services as deletion
from webapp.projects.disk_use import project_disk_use
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path) -> Path:
    """A folder store of the test's own; Django rebuilds the storage when STORAGES changes."""
    folder = tmp_path / "artifacts"
    settings.RLAB_ARTIFACT_DIR = folder
    settings.STORAGES = {**settings.STORAGES, "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(folder)}}}
    return folder


@pytest.fixture
def tracked_run(project, user):
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="script")
    return tracked_run_create(experiment=experiment, user=user, name="sft")


def upload(owner, path: str, data: bytes) -> Artifact:
    return artifact_upload(owner=owner, path=path, stream=io.BytesIO(data))


@pytest.fixture
def logged(tracked_run, artifact_dir):
    """The run's two files, a model it logged with one, and a model of its experiment with no
    run, with where the store keeps each."""
    upload(tracked_run, "a.txt", b"aaa")
    upload(tracked_run, "deep/b.bin", b"\x00" * 10)
    model = logged_model_create(experiment=tracked_run.experiment, name="m",
                                source_run=tracked_run, model_type="", params={}, tags={})
    upload(model, "MLmodel", b"flavors: {}")
    loose = logged_model_create(experiment=tracked_run.experiment, name="loose",
                                source_run=None, model_type="", params={}, tags={})
    upload(loose, "MLmodel", b"loose")
    return {"run": artifact_dir / "runs" / str(tracked_run.pk),
            "model": artifact_dir / "models" / model.pk,
            "loose": artifact_dir / "models" / loose.pk}


def test_deleting_a_run_removes_its_files_and_its_models_once_committed(
        tracked_run, user, logged, django_capture_on_commit_callbacks):
    assert (logged["run"] / "deep" / "b.bin").read_bytes() == b"\x00" * 10
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        plan = deletion.run_delete(run=tracked_run, user=user)
        assert logged["run"].is_dir()  # nothing goes before the commit

    assert plan.bytes_on_disk >= 3 + 10 + len(b"flavors: {}")
    for callback in callbacks:
        callback()
    assert not logged["run"].exists() and not logged["model"].exists()
    assert logged["loose"].is_dir()  # the experiment's, not the run's
    assert list(LoggedModel.objects.values_list("name", flat=True)) == ["loose"]


def test_deleting_an_experiment_removes_its_models_without_a_run(
        tracked_run, user, logged, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deletion.experiment_delete(experiment=tracked_run.experiment, user=user)

    assert not any(path.exists() for path in logged.values())
    assert not Artifact.objects.exists()


def test_deleting_a_project_removes_all_its_artifacts(
        tracked_run, project, user, logged, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        deletion.project_delete(project=project, user=user)

    assert not any(path.exists() for path in logged.values())


def test_a_projects_disk_use_counts_its_artifacts(tracked_run, project, logged):
    assert project_disk_use(project).parts["artifacts"] == 3 + 10 + len(b"flavors: {}") + 5
