"""Runs: the list, one run's state, cancelling, deleting, and its checkpoints.

No `from __future__ import annotations` here: ninja resolves the parameters of a @paginate view
in the pagination module, where a name such as RunStatus written as a string means nothing."""

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.conf import settings as ninja_settings
from ninja.errors import HttpError
from ninja.pagination import LimitOffsetPagination, paginate

from webapp.api.schemas import (
    LIST_ERRORS,
    READ_ERRORS,
    WRITE_ERRORS,
    CheckpointListItem,
    ErrorOut,
    RunDetailOut,
    RunOut,
)
from webapp.common.inputs import BIGINT_MAX
from webapp.deletion.services import run_delete
from webapp.runs.models import RunStatus
from webapp.runs.run_search import runs_search
from webapp.runs.search_grammar import RLAB_RUNS, SearchError
from webapp.runs.selectors import checkpoints_on_disk, get_run_for_user, runs_for_user
from webapp.runs.services import run_cancel
from webapp.teams.models import Role

router = Router(tags=["runs"])


class BoundedPagination(LimitOffsetPagination):
    """ninja's limit and offset, within what Postgres takes for LIMIT and OFFSET: a bigint."""

    class Input(Schema):
        limit: int = Field(ninja_settings.PAGINATION_PER_PAGE, ge=1, le=BIGINT_MAX)
        offset: int = Field(0, ge=0, le=BIGINT_MAX)


def ensure_active(run) -> None:
    """409 for a write to a run that has ended: its record is closed."""
    if run.is_terminal:
        raise HttpError(409, f"Run {run} has ended ({run.status}): it takes no more data. "
                             "Log to a new run.")


@router.get("/runs", response={200: list[RunOut], **LIST_ERRORS}, summary="List runs")
@paginate(BoundedPagination)
def run_list(request: HttpRequest, project: int | None = None, experiment: int | None = None,
             status: RunStatus | None = None,
             filter: str = Query("", description="MLflow's search filter: `params.lr > 1e-6 "
                                                 "and tags.method = 'spo'`."),
             order_by: list[str] = Query([], description="MLflow's order_by, one key a "
                                                          "parameter: `metrics.loss ASC`.")):
    """Runs and evaluation jobs you can see, newest first, `limit` at a time from `offset`;
    optionally of one project, one experiment, or in one status; optionally matching an MLflow
    search filter (statuses in rlab's words; a parameter may also be compared with a bare
    number, as a number) and in the order of MLflow's order_by keys. A filter outside the
    grammar is a 400 naming the bad token."""
    runs = runs_for_user(request.user)
    if project is not None:
        runs = runs.filter(experiment__project_id=project)
    if experiment is not None:
        runs = runs.filter(experiment_id=experiment)
    if status is not None:
        runs = runs.filter(status=status)
    if not order_by:
        runs = runs.order_by("-created_at", "-pk")
    if filter or order_by:
        try:
            runs = runs_search(runs, filter_string=filter, order_by=order_by, schema=RLAB_RUNS,
                               default_order=not order_by)
        except SearchError as exc:
            raise HttpError(400, str(exc)) from None
    return runs


@router.get("/runs/{run_id}", response={200: RunDetailOut, **READ_ERRORS}, summary="Get a run")
def run_detail(request: HttpRequest, run_id: int):
    """Status, progress, timestamps, error, config, and the checkpoint an evaluation job
    evaluates."""
    return get_run_for_user(request.user, run_id)


@router.post("/runs/{run_id}/cancel", response={200: RunDetailOut, 409: ErrorOut,
                                                **WRITE_ERRORS},
             summary="Cancel a run")
def run_cancel_endpoint(request: HttpRequest, run_id: int):
    """Mark the run cancelled; its worker stops the training at its next heartbeat. Needs the
    member role; a run that has already ended is a 409."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    cancelled = run_cancel(run=run, user=request.user)
    run.refresh_from_db()
    if not cancelled:
        raise HttpError(409, f"Run {run} has already ended ({run.status}).")
    return run


@router.delete("/runs/{run_id}", response={204: None, 409: ErrorOut, **WRITE_ERRORS},
               summary="Delete a run")
def run_delete_endpoint(request: HttpRequest, run_id: int):
    """Delete the run with its metrics, rollouts, logs, checkpoints and folder, for good. An
    admin of the team may delete any run, a member the runs they launched. A run that is active,
    or ended moments ago and may still be stopping, or whose checkpoint an active run loads, is
    a 409 that says what to do first."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    try:
        run_delete(run=run, user=request.user)
    except ValidationError as exc:
        raise HttpError(409, " ".join(exc.messages)) from None
    return Status(204, None)


@router.get("/runs/{run_id}/checkpoints", response={200: list[CheckpointListItem],
                                                    **READ_ERRORS},
            summary="List a run's checkpoints")
def checkpoint_list(request: HttpRequest, run_id: int):
    """Newest first, each with its folder's size (null once the folder is gone)."""
    run = get_run_for_user(request.user, run_id)
    checkpoints = []
    for checkpoint, size in checkpoints_on_disk(run):
        checkpoint.size_bytes = size
        checkpoints.append(checkpoint)
    return checkpoints
