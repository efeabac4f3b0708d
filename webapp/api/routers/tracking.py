"""Tracked runs: training that runs elsewhere (a script, TRL, veRL) logs into rlab. A script
creates a run of a tracked experiment (made on first use), logs its parameters, metrics and
rollouts to it, heartbeats while it runs, and ends it; rlab charts and browses it like any other
run. A run whose script goes silent crashes (RLAB_TRACKED_STALE_AFTER_SECONDS); any write or
heartbeat from its script makes it run again, and so does resuming it.

A script run's process (a job template's command, which the SDK attaches to by RLAB_RUN_ID)
logs its parameters here too; its status is its worker's, from the process's exit code, so its
heartbeat, resume and end are answered with the run as it is and change nothing."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict, Field, StringConstraints

from webapp.api.routers.runs import ensure_active
from webapp.api.schemas import WRITE_ERRORS, ErrorOut, RunDetailOut
from webapp.common.inputs import Text
from webapp.projects.selectors import get_project_for_user
from webapp.runs.models import RunStatus
from webapp.runs.selectors import get_run_for_user
from webapp.runs.tracking import (
    tracked_experiment_get_or_create,
    tracked_run_create,
    tracked_run_finish,
    tracked_run_heartbeat,
    tracked_run_log_params,
    tracked_run_reopen,
)
from webapp.teams.models import Role

logger = logging.getLogger(__name__)

router = Router(tags=["tracked runs"])

# Kept as text, as MLflow keeps parameters: a NaN is stored as "nan".
ParamValue = Text | int | float | bool | None


class TrackedRunIn(Schema):
    model_config = ConfigDict(extra="forbid")

    experiment: Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1,
                                                  max_length=120)] = Field(
        description="The tracked experiment to log under; created on first use.")
    name: Annotated[Text, Field(max_length=250)] = ""
    params: dict[Text, ParamValue] = Field(default_factory=dict,
                                           description="Hyperparameters, shown as the config.")
    tags: dict[Text, Text] = Field(default_factory=dict)
    client_key: Annotated[Text, Field(max_length=64)] = Field(
        "", description="A key the script makes up for this run (a UUID, say): sending the "
                        "request again with it returns the run it created, so a retry after a "
                        "lost answer starts no second run.")


class ParamsIn(Schema):
    model_config = ConfigDict(extra="forbid")

    params: dict[Text, ParamValue]


class FinishIn(Schema):
    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed", "cancelled"] = "succeeded"


def _text(params: dict[str, ParamValue]) -> dict[str, str]:
    """Parameters as MLflow keeps them: text."""
    return {str(key)[:250]: "" if value is None else str(value) for key, value in params.items()}


def _tracked(request: HttpRequest, run_id: int):
    """The run, tracked or a script run: those that take data from a script."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    if not run.experiment.is_logged_by_scripts:
        raise HttpError(409, f"Run {run} was launched from rlab: its worker reports for it.")
    return run


def _as_it_is(run, what: str):
    """A script run's answer to its process's heartbeat, resume or end: the run, unchanged
    (409 once it has ended), since its worker reports its status."""
    if what:
        logger.info("script run %s: its process reported %s; left to its worker, which ends "
                    "the run by the process's exit code", run.pk, what)
    ensure_active(run)
    return run


def _tracked_run(request: HttpRequest, run_id: int):
    """The tracked run, which must be running; a crashed one runs again, since its script, cut
    off for a while, reports."""
    run = _tracked(request, run_id)
    if run.status == RunStatus.CRASHED:
        tracked_run_heartbeat(run_id=run.pk)
        run.refresh_from_db()
    ensure_active(run)
    return run


@router.post("/projects/{project_id}/tracked-runs", response={201: RunDetailOut, **WRITE_ERRORS},
             summary="Start a tracked run")
def tracked_run_start(request: HttpRequest, project_id: int, payload: TrackedRunIn):
    """A new running run of the tracked experiment `experiment` (created on first use), for a
    script that trains elsewhere; log to it with the metrics and rollouts endpoints, then
    finish it. With a `client_key` sent before, the run it started, unchanged. Needs the
    member role."""
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    experiment = tracked_experiment_get_or_create(project=project, user=request.user,
                                                  name=payload.experiment)
    run = tracked_run_create(experiment=experiment, user=request.user, name=payload.name,
                             params=_text(payload.params), tags=payload.tags,
                             client_key=payload.client_key)
    return Status(201, run)


@router.post("/runs/{run_id}/params", response={200: RunDetailOut, 409: ErrorOut,
                                                **WRITE_ERRORS},
             summary="Log a tracked run's parameters")
def tracked_run_params(request: HttpRequest, run_id: int, payload: ParamsIn):
    """Parameters keep their first value: sending one again with another value is a 422."""
    run = _tracked_run(request, run_id)
    tracked_run_log_params(run_id=run.pk, params=_text(payload.params))
    run.refresh_from_db()
    return run


@router.post("/runs/{run_id}/finish", response={200: RunDetailOut, 409: ErrorOut,
                                                **WRITE_ERRORS},
             summary="End a tracked run")
def tracked_run_end(request: HttpRequest, run_id: int, payload: FinishIn):
    """Succeeded (the default), failed or cancelled; a crashed run too (its script got
    through at last); a run that has ended otherwise is a 409."""
    run = _tracked_run(request, run_id)
    if run.is_script:
        return _as_it_is(run, f"its end ({payload.status})")
    tracked_run_finish(run_id=run.pk, status=RunStatus(payload.status))
    run.refresh_from_db()
    return run


@router.post("/runs/{run_id}/heartbeat", response={200: RunDetailOut, 409: ErrorOut,
                                                   **WRITE_ERRORS},
             summary="Say a tracked run's script is alive")
def tracked_run_beat(request: HttpRequest, run_id: int):
    """The SDK sends this every 30 s while nothing else reaches the server: a running tracked
    run that nothing was heard from for RLAB_TRACKED_STALE_AFTER_SECONDS becomes crashed. A
    crashed run runs again; one that ended otherwise is a 409."""
    run = _tracked(request, run_id)
    if run.is_script:
        return _as_it_is(run, "")
    tracked_run_heartbeat(run_id=run.pk)
    run.refresh_from_db()
    ensure_active(run)
    return run


@router.post("/runs/{run_id}/resume", response={200: RunDetailOut, 409: ErrorOut,
                                                **WRITE_ERRORS},
             summary="Resume a tracked run")
def tracked_run_resume(request: HttpRequest, run_id: int):
    """Running again, whatever its end (succeeded, failed, cancelled, crashed), for a script
    that continues it (`rlab.init(resume_run_id=...)`); its end time and error are cleared."""
    run = _tracked(request, run_id)
    if run.is_script:
        return _as_it_is(run, "")
    tracked_run_reopen(run_id=run.pk)
    run.refresh_from_db()
    return run
