"""Deleting a dataset: admins only; its files go once no other dataset and no run uses them."""

from __future__ import annotations

import threading
from io import BytesIO

import pytest
from django.db import connection, transaction
from django.urls import reverse

from tests.webapp.lifecycle import run_with_data
from webapp.datasets import storage
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_create
from webapp.deletion.services import dataset_delete, run_delete
from webapp.experiments.services import experiment_create
from webapp.projects.activity import Verb
from webapp.projects.services import project_create
from webapp.reviews.models import Activity

pytestmark = pytest.mark.django_db

ROWS = b'{"prompt": "1 + 1?", "answer": 2}\n{"prompt": "2 + 2?", "answer": 4}\n'


@pytest.fixture(autouse=True)
def run_dir(settings, tmp_path):
    settings.RLAB_RUN_DIR = tmp_path / "runs"


def upload(project, user, name: str = "sums", rows: bytes = ROWS) -> Dataset:
    return dataset_create(project=project, user=user, name=name, kind="prompts",
                          filename=f"{name}.jsonl", file=BytesIO(rows),
                          mapping={"prompt": "prompt", "answer": "answer"})


def test_an_admin_deletes_a_dataset_and_its_files(
        signed_in, project, user, django_capture_on_commit_callbacks):
    dataset = upload(project, user, rows=ROWS + b'{"prompt": "3 + 3?", "answer": 6}\n')
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("deletion:dataset", args=[dataset.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("datasets:list", args=[project.pk])
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not dataset.original_path.exists() and not dataset.normalized_path.exists()
    assert Activity.objects.get(verb=Verb.DELETED).detail.startswith("dataset sums (1 dataset, ")
    page = signed_in.get(response["Location"]).content.decode()
    assert "Deleted dataset sums: 1 dataset, " in page


def test_a_file_another_dataset_holds_too_is_kept(
        project, team, user, django_capture_on_commit_callbacks):
    dataset = upload(project, user)
    elsewhere = project_create(team=team, name="Other", description="", user=user)
    same = upload(elsewhere, user, name="same bytes")
    with django_capture_on_commit_callbacks(execute=True):
        plan = dataset_delete(dataset=dataset, user=user)
    assert plan.bytes_on_disk == 0
    assert same.original_path.exists() and same.normalized_path.exists()


def test_the_rows_file_of_a_run_that_trained_on_it_stays_until_the_run_goes(
        project, experiment, user, django_capture_on_commit_callbacks):
    dataset = upload(project, user)
    run = run_with_data(experiment, user, config={"dataset": str(dataset.normalized_path)})
    with django_capture_on_commit_callbacks(execute=True):
        dataset_delete(dataset=dataset, user=user)
    assert not dataset.original_path.exists()
    assert dataset.normalized_path.exists()  # the run's config snapshot names it
    with django_capture_on_commit_callbacks(execute=True):
        run_delete(run=run, user=user)
    assert not dataset.normalized_path.exists()


def test_a_deletion_that_fails_removes_no_file(
        project, user, django_capture_on_commit_callbacks):
    dataset = upload(project, user)
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            dataset_delete(dataset=dataset, user=user)
            raise RuntimeError("the transaction fails after the delete")
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert dataset.original_path.exists() and dataset.normalized_path.exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_only_an_admin_deletes_a_dataset(client, project, user, member_of, role):
    dataset = upload(project, user)
    client.force_login(member_of(role))
    assert client.get(reverse("deletion:dataset", args=[dataset.pk])).status_code == 403
    assert client.post(reverse("deletion:dataset", args=[dataset.pk])).status_code == 403
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_an_outsider_gets_404(client, project, user, other_user):
    dataset = upload(project, user)
    client.force_login(other_user)
    assert client.post(reverse("deletion:dataset", args=[dataset.pk])).status_code == 404


def test_the_confirmation_page_names_the_experiments_that_use_it(signed_in, project, user):
    dataset = upload(project, user)
    experiment_create(project=project, author=user, name="on-sums", description="",
                      config={"max_steps": 3, "dataset": str(dataset.pk)})
    page = signed_in.get(reverse("deletion:dataset", args=[dataset.pk])).content.decode()
    assert "on-sums names this dataset: it cannot launch until edited" in page
    assert 'id="confirm-delete-button"' in page


def test_the_dataset_page_offers_deletion_to_admins(client, project, user, member_of):
    dataset = upload(project, user)
    url = reverse("datasets:detail", args=[dataset.pk])
    client.force_login(user)
    assert 'id="delete-dataset"' in client.get(url).content.decode()
    client.force_login(member_of("member"))
    assert 'id="delete-dataset"' not in client.get(url).content.decode()


@pytest.mark.django_db(transaction=True)
def test_an_upload_of_the_same_bytes_under_way_keeps_the_file_a_deletion_would_remove(
        project, team, user):
    dataset = upload(project, user)
    elsewhere = project_create(team=team, name="Other", description="", user=user)
    # An upload of the same bytes is between storing its blobs (they were there already) and
    # committing its row: what dataset_create holds meanwhile.
    def delete() -> None:
        try:
            dataset_delete(dataset=dataset, user=user)
        finally:
            connection.close()  # this thread's own

    with storage.blobs_lock(exclusive=False):
        deleting = threading.Thread(target=delete)
        deleting.start()
        deleting.join(timeout=2)
        assert deleting.is_alive(), "the files wait for the upload to commit its row"
        same = Dataset.objects.create(
            project=elsewhere, name="same bytes", kind=dataset.kind, format=dataset.format,
            original_filename="same.jsonl", size_bytes=dataset.size_bytes,
            row_count=dataset.row_count, columns=dataset.columns,
            column_mapping=dataset.column_mapping, sha256=dataset.sha256,
            normalized_sha256=dataset.normalized_sha256, uploaded_by=user)
    deleting.join(timeout=30)
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert same.original_path.exists() and same.normalized_path.exists()
