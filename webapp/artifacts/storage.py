"""The artifact store: Django's storage named "artifacts" (settings.STORAGES), a folder under
RLAB_VAR_DIR embedded, or an S3-compatible bucket (django-storages) when RLAB_ARTIFACT_BUCKET is
set. Every file of a run or a logged model lives under its owner's prefix (Artifact.storage_name)."""

from __future__ import annotations

from django.core.files.storage import Storage, storages


def artifact_storage() -> Storage:
    return storages["artifacts"]
