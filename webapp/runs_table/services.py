"""Writes of the runs table: a user's columns, and what a member does to the runs ticked in it
(tag them, cancel them), each run through the service that owns the act."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from webapp.projects.models import Project
from webapp.reviews.services import run_tag_add
from webapp.runs.models import Run
from webapp.runs.services import run_cancel
from webapp.runs_table.columns import Column
from webapp.runs_table.models import ColumnSet


def column_set_save(*, user, project: Project, columns: list[Column]) -> ColumnSet:
    """Keep `columns` as the user's columns of the project's table (parsed, so valid)."""
    column_set, _ = ColumnSet.objects.update_or_create(
        user=user, project=project, defaults={"columns": [column.id for column in columns]})
    return column_set


def _picked(project: Project, run_ids: list[int]) -> list[Run]:
    """The project's runs among `run_ids`; any other id (another project's run, none) is left
    out, so a body with another team's ids acts on nothing of theirs."""
    return list(Run.objects.filter(experiment__project=project, pk__in=run_ids)
                .select_related("experiment__project").order_by("pk"))


def runs_tag_add(*, project: Project, actor, run_ids: list[int], name: str) -> int:
    """Add the team tag `name` to each picked run of the project, all or none (a bad name is
    reviews' ValidationError); returns how many runs it was added to."""
    runs = _picked(project, run_ids)
    with transaction.atomic():
        for run in runs:
            run_tag_add(run=run, actor=actor, name=name)
    return len(runs)


@dataclass(frozen=True)
class CancelReport:
    cancelled: list[Run]
    already_ended: list[Run]
    not_found: int  # ids that name no run of the project


def runs_cancel(*, project: Project, user, run_ids: list[int]) -> CancelReport:
    """Cancel each picked run of the project through runs' run_cancel (its worker stops it at
    the next heartbeat); a run that had already ended is reported, not changed."""
    runs = _picked(project, run_ids)
    cancelled, ended = [], []
    for run in runs:
        (cancelled if run_cancel(run=run, user=user) else ended).append(run)
    return CancelReport(cancelled, ended, len(set(run_ids)) - len(runs))
