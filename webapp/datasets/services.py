"""Writes for datasets: keeping an upload between its parse and its confirmation, and creating
the dataset from it, all or nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q

from webapp.datasets import parsing, storage, streaming
from webapp.datasets.mapping import mapped_roles, normalise
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import upload_limits
from webapp.projects.models import Project
from webapp.teams.models import Role
from webapp.teams.selectors import require_role

logger = logging.getLogger(__name__)

# An upload that is neither confirmed nor discarded (its tab was closed) is removed after this.
STAGING_MAX_AGE_S = 24 * 3600


@dataclass(frozen=True)
class StagedUpload:
    token: str  # names the staged file; the caller keeps it server-side (in the session)
    summary: parsing.Summary


def dataset_upload_stage(*, file: BinaryIO, filename: str, kind: str) -> StagedUpload:
    """Read an upload through once and, if it parses, keep it until it is confirmed or
    discarded. DatasetError, with nothing kept, if it does not."""
    summary = parsing.scan(file, filename=filename, max_bytes=settings.RLAB_DATASET_MAX_BYTES,
                           limits=upload_limits(), kind=kind)
    storage.staging_sweep(older_than_s=STAGING_MAX_AGE_S)
    file.seek(0)
    return StagedUpload(token=storage.staged_put(file), summary=summary)


def dataset_upload_discard(*, token: str) -> None:
    storage.staged_remove(token)


def dataset_create(*, project: Project, user, name: str, kind: str, filename: str,
                   file: BinaryIO, mapping: dict[str, str]) -> Dataset:
    """Store the file (binary, seekable) and its normalised rows, and record the dataset; all of
    it or nothing. The file is read through twice, and never held whole: once to normalise its
    rows into their blob as they are read, once to store it.

    DatasetError if the file or the mapping is unusable, ValidationError if the name is taken.
    Call it outside a transaction: files cannot be rolled back with an enclosing one."""
    require_role(user, project.team_id, Role.MEMBER)
    written: list[str] = []
    try:
        # Until the row is committed, no deletion may remove a blob this reuses.
        with storage.blobs_lock(exclusive=False):
            with storage.BlobWriter() as normalised:
                summary = normalise(file, filename=filename,
                                    max_bytes=settings.RLAB_DATASET_MAX_BYTES,
                                    limits=upload_limits(), kind=kind, mapping=mapping,
                                    out=normalised)
                normalized_sha256, created = normalised.commit()
            if created:
                written.append(normalized_sha256)
            size = streaming.file_size(file)  # and back at its start
            sha256, created = storage.blob_put_file(file)
            if created:
                written.append(sha256)
            with transaction.atomic():
                dataset = Dataset.objects.create(
                    project=project, name=name, kind=kind, format=summary.format,
                    original_filename=filename[:255], size_bytes=size,
                    row_count=summary.row_count, columns=list(summary.columns),
                    column_mapping={role: mapping[role]
                                    for role in mapped_roles(kind, mapping)},
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
        with storage.blobs_lock(exclusive=True):
            try:
                referenced = Dataset.objects.filter(
                    Q(sha256=sha256) | Q(normalized_sha256=sha256)).exists()
            except DatabaseError:
                logger.warning("could not check blob %s after a failed dataset create; kept",
                               sha256)
                continue
            if not referenced:
                storage.blob_remove(sha256)


