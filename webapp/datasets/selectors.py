"""Reads for datasets. Access follows the project: its team's members see a dataset, everyone
else gets 404, and a member whose role is too low for the action gets 403."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from itertools import islice
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.datasets import parsing, storage
from webapp.datasets.cells import Cell
from webapp.datasets.models import Dataset, DatasetKind
from webapp.datasets.streaming import Limits
from webapp.projects.models import Project
from webapp.projects.selectors import projects_for_user
from webapp.teams.models import Role
from webapp.teams.selectors import require_role

logger = logging.getLogger(__name__)


def datasets_for_user(user) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project__in=projects_for_user(user)).select_related(
        "project", "project__team", "uploaded_by")


def datasets_for_project(project: Project) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project=project).select_related("uploaded_by")


def get_dataset_for_user(user, dataset_id: int, role: str = Role.VIEWER) -> Dataset:
    dataset = get_object_or_404(datasets_for_user(user), pk=dataset_id)
    require_role(user, dataset.project.team_id, role)
    return dataset


def staged_upload(token: str) -> BinaryIO | None:
    """A staged upload, open for reading (the caller closes it), or None if there is none by
    that token (any more)."""
    return storage.staged_open(token)


def upload_limits() -> Limits:
    """What an uploaded dataset file may hold besides its size (RLAB_DATASET_MAX_BYTES), each
    checked as the file is read."""
    return Limits(rows=settings.RLAB_DATASET_MAX_ROWS,
                  decoded_bytes=settings.RLAB_DATASET_MAX_DECODED_BYTES,
                  row_bytes=parsing.MAX_ROW_BYTES)


def staged_preview(upload: BinaryIO, *, filename: str, columns: Sequence[str], rows: int,
                   kind: str) -> list[list[Cell]]:
    """The first `rows` rows of a staged upload of a `kind` dataset, under its `columns`; only
    those are read. DatasetError if it no longer parses as far as that (the limits may have
    changed)."""
    return parsing.preview(upload, filename=filename, max_bytes=settings.RLAB_DATASET_MAX_BYTES,
                           limits=upload_limits(), columns=columns, rows=rows, kind=kind)


def dataset_preview(dataset: Dataset, *, limit: int = 10) -> list[dict[str, str]] | None:
    """The first rows of the normalised file, or None if the file is missing from the store."""
    try:
        with dataset.normalized_path.open(encoding="utf-8") as file:
            return [json.loads(line) for line in islice(file, limit)]
    except FileNotFoundError:
        logger.error("dataset %s: normalised file %s is missing", dataset.pk,
                     dataset.normalized_path)
        return None


def dataset_experiments(dataset: Dataset) -> QuerySet:
    """Experiments of the dataset's project whose config references it."""
    return dataset.project.experiments.filter(config__dataset=str(dataset.pk))


def dataset_file_for_run(*, project: Project, reference: str,
                         kind: str = DatasetKind.PROMPTS) -> str:
    """The normalised file of the dataset of `kind` that an experiment's `dataset` setting
    names (its id), for a run's config snapshot. ValidationError if it names no such dataset of
    `project`, so a config can never point the trainer at any other file."""
    dataset = (Dataset.objects.filter(project=project, kind=kind, pk=int(reference)).first()
               if re.fullmatch(r"[0-9]{1,18}", reference) else None)
    if dataset is None:
        raise ValidationError(f"The experiment's dataset ({reference!r}) is not a "
                              f"{parsing.KIND_NAMES[kind]} dataset of this "
                              f"project. Edit the experiment and choose one.")
    if not dataset.normalized_path.exists():
        logger.error("dataset %s: normalised file %s is missing", dataset.pk,
                     dataset.normalized_path)
        raise ValidationError(f"The file of dataset {dataset.name!r} is missing from the "
                              f"dataset store. Upload the dataset again.")
    return str(dataset.normalized_path)


def project_datasets_bytes(project: Project) -> int:
    """Bytes in the files of the project's datasets: each uploaded file and its normalised rows
    (its part of the project's disk use: webapp.projects.disk_use). A file missing from the store
    counts nothing: the dataset page says so."""
    blobs = {sha256 for pair in project.datasets.values_list("sha256", "normalized_sha256")
             for sha256 in pair}
    total = 0
    for sha256 in blobs:
        try:
            total += storage.blob_path(sha256).stat().st_size
        except OSError:
            continue
    return total
