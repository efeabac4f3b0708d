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
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import upload_limits
from webapp.projects.deletion import (
    DeletionPlan,
    deletion_plan,
    deletion_summary,
    files_remove_on_commit,
)
from webapp.projects.models import Project
from webapp.reviews.services import activity_record_deletion
from webapp.runs.models import Run
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
                summary = parsing.normalise(file, filename=filename,
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


def dataset_deletion_plan(*, dataset: Dataset) -> DeletionPlan:
    """What deleting the dataset removes: its row, and its files unless another dataset or a
    run's config snapshot (a run that trained on it) still uses them."""
    return deletion_plan(runs=Run.objects.none(), project_id=dataset.project_id,
                         datasets=Dataset.objects.filter(pk=dataset.pk))


def dataset_delete(*, dataset: Dataset, user) -> DeletionPlan:
    """Delete the dataset, then its files that nothing uses any more once committed; record it
    in the project's feed. Needs the admin role. Runs that trained on it keep its rows' file;
    experiments that name it cannot launch until edited (they say so)."""
    require_role(user, dataset.project.team_id, Role.ADMIN)
    with transaction.atomic():
        # Locked: a second deletion of it waits for this one, then finds it gone.
        if not Dataset.objects.select_for_update().filter(pk=dataset.pk).exists():
            raise ValidationError(f"Dataset {dataset.name!r} was deleted already.")
        plan = dataset_deletion_plan(dataset=dataset)
        Dataset.objects.filter(pk=dataset.pk).delete()
        activity_record_deletion(project_id=dataset.project_id, actor=user,
                                 detail=f"dataset {dataset.name} ({deletion_summary(plan)})")
        files_remove_on_commit(plan, project_id=dataset.project_id)
    logger.info("dataset %s (%s) deleted by %s: %s", dataset.pk, dataset.name,
                user.get_username(), deletion_summary(plan))
    return plan
