"""How much room artifacts take: those of runs and experiments (what deleting them frees), and
those of a project (its part of the project's disk use)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, Sum

from webapp.artifacts.models import Artifact
from webapp.projects.models import Project


def _bytes(rows) -> int:
    return rows.aggregate(total=Sum("size"))["total"] or 0


def artifacts_bytes(*, runs: Iterable[int] = (), experiments: Iterable[int] = ()) -> int:
    """Bytes of the runs' artifacts, of the models they logged, and of the experiments'
    models."""
    runs, experiments = list(runs), list(experiments)
    return _bytes(Artifact.objects.filter(
        Q(run_id__in=runs) | Q(logged_model__source_run_id__in=runs)
        | Q(logged_model__experiment_id__in=experiments)))


def project_artifacts_bytes(project: Project) -> int:
    """Bytes of the files the project's scripts logged, and of the models they logged (its part
    of the project's disk use: webapp.projects.disk_use)."""
    return _bytes(Artifact.objects.filter(Q(run__experiment__project=project)
                                          | Q(logged_model__experiment__project=project)))
