"""Fixtures for the artifact tests: a folder store of their own, and a tracked run to log to."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path) -> Path:
    """The store's folder; Django rebuilds the storage when STORAGES changes."""
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
