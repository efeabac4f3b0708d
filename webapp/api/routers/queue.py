"""The queue: the queued runs you may see, in the order workers take them, with why each waits;
and a queued run's priority."""

from datetime import datetime
from typing import Annotated

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field, StrictInt

from webapp.api.schemas import LIST_ERRORS, WRITE_ERRORS, ErrorOut
from webapp.queue.selectors import queue_sections
from webapp.queue.services import PRIORITY_MAX, PRIORITY_MIN, run_priority_set
from webapp.runs.selectors import get_run_for_user

router = Router(tags=["queue"])


class QueuedRunOut(Schema):
    id: int
    experiment: str
    number: int
    project_id: int
    project: str
    launched_by: str
    position: int = Field(description="Its place in its queue, all teams' runs counted; 1 "
                                      "goes next.")
    priority: int
    created_at: datetime
    enqueued_at: datetime | None
    wait_reason: str | None = Field(description="Why it has not started; null when a worker "
                                                "should take it now.")


class QueueOut(Schema):
    name: str
    queued: int = Field(description="Queued runs in this queue, all teams'.")
    other_teams: int = Field(description="Of those, runs of teams you are not in.")
    workers: int = Field(description="Live workers that consume this queue.")
    slots: int
    busy: int
    runs: list[QueuedRunOut] = Field(description="Your teams' queued runs, first in line first "
                                                 "(the first 200).")


class QueueListOut(Schema):
    queues: list[QueueOut]


class PriorityIn(Schema):
    priority: Annotated[StrictInt, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]


class PriorityOut(Schema):
    id: int
    status: str
    priority: int


@router.get("/queue", response={200: QueueListOut, **LIST_ERRORS}, summary="The queue")
def queue_list(request: HttpRequest):
    """Each queue (cpu, gpu) with its queued runs of your teams in the order workers take them
    (highest priority, then oldest; runs a limit holds back are passed over), their places
    among all teams' runs, and why each waits."""
    queues = []
    for section in queue_sections(request.user):
        runs = [{"id": e.run.pk, "experiment": e.run.experiment.name, "number": e.run.number,
                 "project_id": e.run.experiment.project_id,
                 "project": e.run.experiment.project.name,
                 "launched_by": e.run.launched_by.get_username(), "position": e.position,
                 "priority": e.run.priority, "created_at": e.run.created_at,
                 "enqueued_at": e.run.enqueued_at, "wait_reason": e.reason}
                for e in section.entries]
        queues.append({"name": section.name, "queued": section.total,
                       "other_teams": section.hidden, "workers": section.capacity.workers,
                       "slots": section.capacity.slots, "busy": section.capacity.busy,
                       "runs": runs})
    return {"queues": queues}


@router.post("/runs/{run_id}/priority", response={200: PriorityOut, 409: ErrorOut,
                                                  **WRITE_ERRORS},
             summary="Set a queued run's priority")
def run_priority_endpoint(request: HttpRequest, run_id: int, body: PriorityIn):
    """A whole number from -100 to 100; higher runs first among the
    queued runs of its queue. An admin of the team may set any run's, a member the runs they
    launched (else 403). A run no longer queued is a 409."""
    run = get_run_for_user(request.user, run_id)
    try:
        run = run_priority_set(run=run, user=request.user, priority=body.priority)
    except ValidationError as exc:
        raise HttpError(409, " ".join(exc.messages)) from None
    return {"id": run.pk, "status": run.status, "priority": run.priority}
