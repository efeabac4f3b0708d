"""Sweeps: create one from the same definition `rlab sweep` reads as YAML, read its progress and
best trials, cancel it with its runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Body, Router, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as RequestInvalid
from pydantic import Field

from webapp.api.schemas import READ_ERRORS, WRITE_ERRORS, ErrorOut
from webapp.projects.selectors import get_project_for_user
from webapp.sweeps.definition import DefinitionError, definition_parse
from webapp.sweeps.models import Sweep
from webapp.sweeps.selectors import best_trials, get_sweep_for_user, sweep_progress, sweep_trials
from webapp.sweeps.services import sweep_cancel, sweep_create
from webapp.teams.models import Role

router = Router(tags=["sweeps"])


class SweepProgressOut(Schema):
    planned: int
    succeeded: int
    running: int
    queued: int
    pruned: int
    failed: int
    cancelled: int


class TrialOut(Schema):
    number: int
    value: float
    params: dict[str, Any]
    run_ids: list[int]


class SweepOut(Schema):
    id: int
    project_id: int
    experiment_id: int
    name: str
    method: str
    status: str
    objective: str
    direction: str
    pruner: bool
    budget: int
    max_concurrent: int
    seeds: list[int]
    axes: dict[str, Any]
    notice: str
    created_at: datetime
    finished_at: datetime | None
    url: str
    run_ids: list[int] = Field(description="Its runs, in the order they were created.")
    progress: SweepProgressOut
    best: list[TrialOut] = Field(description="The finished trials, best objective first.")


def _out(sweep: Sweep) -> dict[str, Any]:
    trials = sweep_trials(sweep)
    return {
        **{name: getattr(sweep, name) for name in (
            "id", "project_id", "experiment_id", "name", "method", "status", "objective",
            "direction", "pruner", "budget", "max_concurrent", "seeds", "axes", "notice",
            "created_at", "finished_at")},
        "url": sweep.get_absolute_url(),
        "run_ids": list(sweep.runs.order_by("pk").values_list("pk", flat=True)),
        "progress": vars(sweep_progress(sweep, trials)),
        "best": [{"number": row.number, "value": row.value, "params": row.params,
                  "run_ids": [run.pk for run in row.runs]} for row in best_trials(sweep, trials)],
    }


@router.post("/projects/{project_id}/sweeps", response={201: SweepOut, **WRITE_ERRORS},
             summary="Create a sweep and launch its runs")
def sweep_create_endpoint(request: HttpRequest, project_id: int,
                          payload: dict[str, Any] = Body(...)):
    """Create a sweep from its definition (the YAML of `rlab sweep`, as JSON: experiment, name,
    method, objective, pruner, budget, max_concurrent, seeds, axes) and launch its runs: all of
    a grid's or a random search's at once, TPE's first batch. Needs the member role. A 422
    names each problem by where it is (`axes.beta`, `budget`); nothing is created then."""
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    try:
        definition = definition_parse(payload, project=project)
    except DefinitionError as exc:
        raise RequestInvalid([{"loc": ["body", *where.split(".", 1)], "msg": message,
                               "type": "value_error"} for where, message in exc.errors.items()]
                             ) from None
    return Status(201, _out(sweep_create(definition=definition, user=request.user)))


@router.get("/sweeps/{sweep_id}", response={200: SweepOut, **READ_ERRORS}, summary="Get a sweep")
def sweep_detail(request: HttpRequest, sweep_id: int):
    return _out(get_sweep_for_user(request.user, sweep_id))


@router.post("/sweeps/{sweep_id}/cancel", response={200: SweepOut, 409: ErrorOut,
                                                    **WRITE_ERRORS},
             summary="Cancel a sweep and its runs")
def sweep_cancel_endpoint(request: HttpRequest, sweep_id: int):
    """Cancel the sweep and all its queued and running runs at once. Needs the member role; a
    sweep that has ended is a 409."""
    sweep = get_sweep_for_user(request.user, sweep_id, Role.MEMBER)
    try:
        sweep_cancel(sweep=sweep, user=request.user)
    except ValidationError as exc:
        raise HttpError(409, " ".join(exc.messages)) from None
    return _out(sweep)
