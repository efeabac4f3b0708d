"""Deleting a project with everything in it, and the disk use its page shows."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.webapp.lifecycle import CHECKPOINT_BYTES, dataset_with_files, run_with_data
from webapp.datasets.models import Dataset
from webapp.experiments.models import Experiment
from webapp.projects.disk_use import project_disk_use
from webapp.projects.models import Project
from webapp.projects.services import project_create
from webapp.reviews.models import Activity
from webapp.runs.files import run_folder
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.RLAB_RUN_DIR = tmp_path / "runs"
    settings.RLAB_DATASET_DIR = tmp_path / "datasets"
    cache.clear()


def delete(client, project, name: str | None = None, **headers):
    return client.post(reverse("deletion:project", args=[project.pk]),
                       {"confirm_name": project.name if name is None else name}, **headers)


def test_an_admin_deletes_a_project_with_everything_and_its_files(
        signed_in, project, experiment, user, django_capture_on_commit_callbacks):
    runs = [run_with_data(experiment, user) for _ in range(2)]
    dataset = dataset_with_files(project, user)
    with django_capture_on_commit_callbacks(execute=True):
        response = delete(signed_in, project)
    assert response.status_code == 302
    assert response["Location"] == reverse("projects:list")
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Experiment.objects.exists() and not Run.objects.exists()
    assert not Dataset.objects.exists() and not Activity.objects.exists()
    assert not any(run_folder(run.pk, run.created_at).exists() for run in runs)
    assert not dataset.original_path.exists() and not dataset.normalized_path.exists()
    assert f"Deleted project {project.name}: 1 experiment, 1 dataset, 2 runs" in \
        signed_in.get(response["Location"]).content.decode()


def test_the_name_must_be_typed(signed_in, project):
    response = delete(signed_in, project, name="something else")
    assert response.status_code == 422
    assert "Type the project&#x27;s name exactly" in response.content.decode()
    assert Project.objects.filter(pk=project.pk).exists()


def test_a_dataset_file_another_project_uploaded_too_is_kept(
        signed_in, project, team, user, django_capture_on_commit_callbacks):
    dataset = dataset_with_files(project, user)
    elsewhere = project_create(team=team, name="Other", description="", user=user)
    same = dataset_with_files(elsewhere, user)
    assert same.normalized_path == dataset.normalized_path
    page = signed_in.get(reverse("deletion:project", args=[project.pk])).content.decode()
    assert 'id="plan-bytes">0\xa0bytes<' in page  # nothing would be freed
    with django_capture_on_commit_callbacks(execute=True):
        delete(signed_in, project)
    assert same.original_path.exists() and same.normalized_path.exists()


def test_a_dataset_file_that_a_run_elsewhere_trained_on_is_kept(
        signed_in, project, team, user, django_capture_on_commit_callbacks):
    from webapp.experiments.services import experiment_create

    dataset = dataset_with_files(project, user)
    elsewhere = project_create(team=team, name="Other", description="", user=user)
    other = experiment_create(project=elsewhere, author=user, name="e", description="",
                              config={"max_steps": 3})
    run_with_data(other, user, config={"dataset": str(dataset.normalized_path)})
    with django_capture_on_commit_callbacks(execute=True):
        delete(signed_in, project)
    assert dataset.normalized_path.exists()
    assert not dataset.original_path.exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_an_admin_deletes_a_project(client, project, member_of, role):
    client.force_login(member_of(role))
    assert client.get(reverse("deletion:project", args=[project.pk])).status_code == 403
    assert delete(client, project).status_code == 403
    assert Project.objects.filter(pk=project.pk).exists()


def test_an_outsider_gets_404(client, project, other_user):
    client.force_login(other_user)
    assert delete(client, project).status_code == 404


def test_a_project_with_an_active_run_is_refused(signed_in, project, experiment, user):
    run_with_data(experiment, user, status=RunStatus.QUEUED)
    page = signed_in.get(reverse("deletion:project", args=[project.pk])).content.decode()
    assert "is still active" in page and 'id="confirm-name"' not in page
    response = delete(signed_in, project)
    assert response.status_code == 422
    assert Project.objects.filter(pk=project.pk).exists()


def test_the_project_page_shows_its_disk_use(signed_in, project, experiment, user):
    for _ in range(2):
        run_with_data(experiment, user)
    dataset = dataset_with_files(project, user)
    dataset_bytes = dataset.original_path.stat().st_size + dataset.normalized_path.stat().st_size
    use = project_disk_use(project)
    assert use.parts == {"runs": 4 * CHECKPOINT_BYTES, "datasets": dataset_bytes,
                         "artifacts": 0}
    page = signed_in.get(reverse("projects:detail", args=[project.pk])).content.decode()
    assert 'id="disk-use"' in page and "3.9\xa0KB of run folders" in page


def test_disk_use_is_kept_a_while_and_forgotten_by_a_deletion(
        signed_in, project, experiment, user, django_capture_on_commit_callbacks):
    run = run_with_data(experiment, user, checkpoints=2)
    assert project_disk_use(project).parts["runs"] == 2 * CHECKPOINT_BYTES
    run_with_data(experiment, user, checkpoints=3)
    # measured a moment ago
    assert project_disk_use(project).parts["runs"] == 2 * CHECKPOINT_BYTES
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post(reverse("deletion:run", args=[run.pk]))
    assert project_disk_use(project).parts["runs"] == 3 * CHECKPOINT_BYTES  # measured again


def test_the_project_page_offers_deletion_to_admins(client, project, user, member_of):
    url = reverse("projects:detail", args=[project.pk])
    client.force_login(user)
    assert 'id="delete-project"' in client.get(url).content.decode()
    client.force_login(member_of("member"))
    assert 'id="delete-project"' not in client.get(url).content.decode()
