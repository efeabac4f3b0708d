"""Rollouts: the batched write of one step's completions, and a filtered read a page at a time.

The read lists completions, newest step first, then by group and sample, with a keyset cursor
(never OFFSET): its filters are the rollout browser's (webapp.rollouts.rollout_browser), written on
the same index expressions, so a page of a run with millions of rollouts seeks straight to its
place.
"""

from __future__ import annotations

from django.db.models import F
from django.http import HttpRequest
from ninja import Query, Router
from ninja.errors import ValidationError

from webapp.api.routers.runs import ensure_active
from webapp.api.schemas import (
    INT_MAX,
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorOut,
    RolloutPageOut,
    RolloutsIn,
    WrittenOut,
)
from webapp.common.inputs import BIGINT_MAX
from webapp.rollouts.rollout_browser import RolloutFilters, RolloutOrder, RowComparison
from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.models import Negated, Rollout
from webapp.runs.selectors import get_run_for_user
from webapp.teams.models import Role

router = Router(tags=["rollouts"])

PAGE_COLUMNS = [Negated("step"), F("group"), F("sample_index")]


def cursor_values(cursor: str) -> list[int]:
    """(-step, group, sample index) from a cursor `step_group_sample`; 422 if unreadable."""
    try:
        step, group, sample = (int(part) for part in cursor.split("_"))
    except ValueError:
        step = group = sample = -1
    if not (0 <= step <= BIGINT_MAX and 0 <= group <= INT_MAX and 0 <= sample <= INT_MAX):
        raise ValidationError([{"loc": ["query", "cursor"], "type": "value_error",
                                "msg": "Not a cursor from this endpoint: pass next_cursor as "
                                       "it came."}])
    return [-step, group, sample]


@router.post("/runs/{run_id}/rollouts", response={200: WrittenOut, 409: ErrorOut,
                                                  **WRITE_ERRORS},
             summary="Log a step's rollouts")
def rollouts_write(request: HttpRequest, run_id: int, payload: RolloutsIn):
    """Store the completions of one step, up to 10,000. Each (group, sample_index) is stored
    once: a batch sent again changes nothing. A group is degenerate (all rewards equal) as its
    items say, or else as this batch's items of the group show. Needs the member role; a run
    that has ended is a 409."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    ensure_active(run)
    received = rollouts_ingest(run_id=run.pk, step=payload.step,
                               items=[item.model_dump(exclude_none=True)
                                      for item in payload.items])
    return {"received": received}


@router.get("/runs/{run_id}/rollouts", response={200: RolloutPageOut, **READ_ERRORS},
            summary="Read rollouts")
def rollouts_read(request: HttpRequest, run_id: int,
                  step_min: int | None = Query(None, ge=0, le=BIGINT_MAX),
                  step_max: int | None = Query(None, ge=0, le=BIGINT_MAX),
                  min_reward: float | None = Query(None, allow_inf_nan=False),
                  max_reward: float | None = Query(None, allow_inf_nan=False),
                  prompt_id: str | None = None, cursor: str = "",
                  limit: int = Query(100, ge=1, le=1000)):
    """Completions newest step first, then by group and sample: those with
    step_min <= step <= step_max, min_reward <= reward <= max_reward, and `prompt_id`. A page
    holds `limit` of them; `next_cursor` gets the next one."""
    run = get_run_for_user(request.user, run_id)
    order = RolloutOrder()
    filters = RolloutFilters(step_min=step_min, step_max=step_max, reward_min=min_reward,
                             reward_max=max_reward)
    rows = Rollout.objects.filter(filters.completion_q(order), filters.group_q(order), run=run)
    if prompt_id is not None:
        rows = rows.filter(prompt_id=prompt_id)
    if cursor:
        rows = rows.filter(RowComparison(PAGE_COLUMNS, ">", cursor_values(cursor)))
    found = list(rows.order_by(*(column.asc() for column in PAGE_COLUMNS))[:limit + 1])
    last = found[limit - 1] if len(found) > limit else None
    return {"items": found[:limit],
            "next_cursor": f"{last.step}_{last.group}_{last.sample_index}" if last else None}
