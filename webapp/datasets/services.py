"""Writes for datasets: keeping an upload between its parse and its confirmation, and creating
the dataset from it, all or nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q

from webapp.datasets import parsing, storage
from webapp.datasets.models import Dataset
from webapp.projects.models import Project
from webapp.teams.models import Role
from webapp.teams.selectors import require_role

logger = logging.getLogger(__name__)

# An upload that is neither confirmed nor discarded (its tab was closed) is removed after this.
STAGING_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class StagedUpload:
    token: str  # names the staged file; the caller keeps it server-side (in the session)
    table: parsing.Table


def dataset_upload_stage(*, data: bytes, filename: str, kind: str) -> StagedUpload:
    """Parse an upload and, if it parses, keep it until it is confirmed or discarded.
    DatasetError, with nothing kept, if it does not."""
    table = parsing.parse(data, filename=filename, max_bytes=settings.RLAB_DATASET_MAX_BYTES,
                          kind=kind)
    storage.staging_sweep(older_than_s=STAGING_MAX_AGE_S)
    return StagedUpload(token=storage.staged_put(data), table=table)


def dataset_upload_discard(*, token: str) -> None:
    storage.staged_remove(token)


def dataset_create(*, project: Project, user, name: str, kind: str, filename: str, data: bytes,
                   mapping: dict[str, str]) -> Dataset:
    """Store the file and its normalised rows, and record the dataset; all of it or nothing.

    DatasetError if the file or the mapping is unusable, ValidationError if the name is taken.
    Call it outside a transaction: files cannot be rolled back with an enclosing one."""
    require_role(user, project.team_id, Role.MEMBER)
    table = parsing.parse(data, filename=filename, max_bytes=settings.RLAB_DATASET_MAX_BYTES,
                          kind=kind)
    rows = parsing.normalise(table, kind=kind, mapping=mapping)
    written: list[str] = []
    try:
        sha256, created = storage.blob_put(data)
        if created:
            written.append(sha256)
        normalized_sha256, created = storage.blob_put(parsing.to_jsonl(rows))
        if created:
            written.append(normalized_sha256)
        with transaction.atomic():
            dataset = Dataset.objects.create(
                project=project, name=name, kind=kind, format=table.format,
                original_filename=filename[:255], size_bytes=len(data), row_count=len(rows),
                columns=list(table.columns),
                column_mapping={role: mapping[role]
                                for role in parsing.mapped_roles(kind, mapping)},
                sha256=sha256, normalized_sha256=normalized_sha256, uploaded_by=user)
    except IntegrityError:
        _remove_unreferenced(written)
        raise ValidationError(
            {"name": "This project already has a dataset with this name."}) from None
    except BaseException:
        _remove_unreferenced(written)
        raise
    logger.info("dataset %s: %s rows from %r (%s bytes) in project %s", dataset.pk,
                dataset.row_count, dataset.original_filename, dataset.size_bytes, project.pk)
    return dataset


def _remove_unreferenced(written: list[str]) -> None:
    """Remove the blobs a failed create wrote, unless another dataset has since referenced the
    same content. Should that check itself fail, the blobs stay: an orphan costs disk space,
    a removed blob would break a dataset."""
    for sha256 in written:
        try:
            referenced = Dataset.objects.filter(
                Q(sha256=sha256) | Q(normalized_sha256=sha256)).exists()
        except DatabaseError:
            logger.warning("could not check blob %s after a failed dataset create; kept", sha256)
            continue
        if not referenced:
            storage.blob_remove(sha256)
