"""Fixtures for the dataset tests: a dataset store of their own, and helpers to upload."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from webapp.datasets import storage


@pytest.fixture(autouse=True)
def dataset_dir(settings, tmp_path) -> Path:
    settings.RLAB_DATASET_DIR = tmp_path / "datasets"
    return settings.RLAB_DATASET_DIR


def stored_files(root: Path) -> set[Path]:
    """Every file in the dataset store: blobs, staged uploads and temporary files alike (but the
    store's lock, which holds nothing)."""
    if not root.exists():
        return set()
    return {p for p in root.rglob("*") if p.is_file() and p.name != storage.LOCK_FILE}


def upload(client, project, data: bytes, *, filename: str = "data.jsonl", name: str = "sums",
           kind: str = "prompts"):
    """Step 1: POST the file; the response (302 to the mapping step, or 422)."""
    return client.post(reverse("datasets:upload", args=[project.pk]), {
        "name": name, "kind": kind, "file": SimpleUploadedFile(filename, data)})


def confirm(client, upload_response, **fields):
    """Step 2: POST the mapping (the page's guesses unless given) to where step 1 redirected."""
    url = upload_response["Location"]
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["form"]
    data = {name: form[name].value() or "" for name in form.fields}
    data.update(fields)
    return client.post(url, data)
