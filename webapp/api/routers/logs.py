"""A run's log lines, for `rlab logs -f` and other scripts that follow a run from a terminal.

A page carries the run's status as it was read before its lines: once a page says the run has
ended and holds fewer than `limit` lines, the follower has every line there will be."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from webapp.api.schemas import READ_ERRORS
from webapp.runs.selectors import get_run_for_user

router = Router(tags=["runs"])

MAX_LINES = 10_000


class LogLineOut(Schema):
    id: int = Field(description="Increases with each line stored; pass the last one as ?after=.")
    time: datetime
    level: str
    source: str = Field(description="trainer (its events), stderr (raw output) or worker.")
    message: str


class LogPageOut(Schema):
    status: str = Field(description="The run's status, read before its lines.")
    active: bool = Field(description="Whether more lines may come: the run has not ended.")
    items: list[LogLineOut]


@router.get("/runs/{run_id}/logs", response={200: LogPageOut, **READ_ERRORS},
            summary="Read a run's log lines")
def log_lines(request: HttpRequest, run_id: int, after: int = Query(0, ge=0),
              limit: int = Query(1000, ge=1, le=MAX_LINES)):
    """Oldest first, `limit` lines with an id above `after`. To follow a run, ask again with
    the last id until a page says `active: false` and holds fewer than `limit` lines."""
    run = get_run_for_user(request.user, run_id)
    lines = (run.log_lines.filter(id__gt=after).order_by("id")
             .values("id", "time", "level", "source", "message")[:limit])
    return {"status": run.status, "active": not run.is_terminal, "items": list(lines)}
