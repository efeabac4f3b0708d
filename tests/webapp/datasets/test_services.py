import hashlib
import io
import os
import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError

from tests.webapp.datasets.conftest import stored_files
from webapp.datasets import storage
from webapp.datasets.models import Dataset
from webapp.datasets.parsing import DatasetError, Summary
from webapp.datasets.services import dataset_create, dataset_upload_stage

pytestmark = pytest.mark.django_db

DATA = b'{"prompt": "1 + 2?", "answer": 3}\n'
MAPPING = {"prompt": "prompt", "answer": "answer"}


def _create(project, user, data: bytes = DATA, **overrides):
    values = dict(project=project, user=user, name="sums", kind="prompts",
                  filename="sums.jsonl", file=io.BytesIO(data), mapping=MAPPING)
    values.update(overrides)
    return dataset_create(**values)


def _database_down(**kwargs):
    raise DatabaseError("connection lost")


def test_a_database_failure_leaves_no_file_behind(project, user, dataset_dir, monkeypatch):
    monkeypatch.setattr(Dataset.objects, "create", _database_down)
    with pytest.raises(DatabaseError):
        _create(project, user)
    assert stored_files(dataset_dir) == set()


def test_a_failure_keeps_blobs_that_other_datasets_use(project, user, dataset_dir, monkeypatch):
    first = _create(project, user)
    before = stored_files(dataset_dir)
    monkeypatch.setattr(Dataset.objects, "create", _database_down)
    with pytest.raises(DatabaseError):
        _create(project, user, name="again")
    assert stored_files(dataset_dir) == before == {first.original_path, first.normalized_path}


def test_a_taken_name_is_a_validation_error_and_leaves_no_new_file(project, user, dataset_dir):
    _create(project, user)
    before = stored_files(dataset_dir)
    with pytest.raises(ValidationError) as info:
        _create(project, user, data=b'{"prompt": "other", "answer": 1}\n')
    assert info.value.message_dict == {
        "name": ["This project already has a dataset with this name."]}
    assert stored_files(dataset_dir) == before
    assert Dataset.objects.count() == 1


def test_a_bad_file_raises_before_anything_is_written(project, user, dataset_dir):
    with pytest.raises(DatasetError):
        _create(project, user, data=b'{"prompt": "p", "answer": "many"}\n')
    assert stored_files(dataset_dir) == set()


def test_a_viewer_cannot_create(project, member_of, dataset_dir):
    with pytest.raises(PermissionDenied):
        _create(project, member_of("viewer"))
    assert stored_files(dataset_dir) == set()


def test_blobs_are_read_only_and_named_by_content(project, user):
    dataset = _create(project, user)
    assert dataset.original_path.name == dataset.sha256
    assert dataset.original_path.parent.name == dataset.sha256[:2]
    assert oct(dataset.original_path.stat().st_mode & 0o777) == "0o444"


def test_staging_sweeps_uploads_abandoned_for_a_day(dataset_dir):
    old = dataset_upload_stage(file=io.BytesIO(DATA), filename="a.jsonl", kind="prompts").token
    day_ago = time.time() - 25 * 3600
    os.utime(dataset_dir / "staging" / old, (day_ago, day_ago))
    new = dataset_upload_stage(file=io.BytesIO(DATA), filename="b.jsonl", kind="prompts").token
    assert storage.staged_open(old) is None
    with storage.staged_open(new) as staged:
        assert staged.read() == DATA


def test_staging_reads_the_upload_once_and_keeps_none_of_its_rows(dataset_dir):
    staged = dataset_upload_stage(file=io.BytesIO(DATA * 3), filename="a.jsonl",
                                  kind="prompts")
    assert staged.summary == Summary(format="jsonl", columns=("prompt", "answer"), row_count=3)


def test_the_normalised_rows_are_written_as_they_are_read_and_named_by_their_hash(project,
                                                                                 user):
    dataset = _create(project, user, data=DATA * 2)
    normalised = dataset.normalized_path.read_bytes()
    assert normalised == b'{"prompt": "1 + 2?", "answer": "3"}\n' * 2
    assert dataset.normalized_sha256 == hashlib.sha256(normalised).hexdigest()
    assert dataset.size_bytes == len(DATA) * 2 and dataset.row_count == 2


@pytest.mark.parametrize("token", ["../../etc/passwd", "0" * 31, "A" * 32, ""])
def test_a_malformed_token_never_reaches_the_filesystem(token):
    assert storage.staged_open(token) is None
