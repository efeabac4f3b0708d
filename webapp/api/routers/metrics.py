"""Metric points: the batched write that training scripts call every few steps, and the read
that the run page's charts use, downsampled by the database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from itertools import repeat

import pydantic
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router
from ninja.errors import HttpError, ValidationError

from webapp.api.routers.runs import ensure_active
from webapp.api.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorOut,
    MetricSeriesOut,
    MetricsIn,
    WrittenOut,
)
from webapp.common.inputs import text_problem, text_refusal
from webapp.runs.ingestion import metrics_ingest
from webapp.runs.selectors import get_run_for_user, metric_keys, metric_series
from webapp.teams.models import Role

router = Router(tags=["metrics"])

# pydantic's JSON parser refuses a lone surrogate with a message about hex escapes.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
SURROGATE_HINT = (" (an escape \\uD800-\\uDFFF must be half of a surrogate pair: send text as "
                  "valid Unicode)")

# A batch of MAX_POINTS points with long keys and ISO times, with room to spare.
MAX_BODY_BYTES = 48 * 1024 * 1024


def read_batch(request: HttpRequest) -> MetricsIn:
    """The request's batch, validated straight from its JSON bytes.

    This endpoint reads its body itself, for two reasons: a full batch is larger than the 2.5 MB
    Django lets a view read (DATA_UPLOAD_MAX_MEMORY_SIZE, a limit meant for forms), and pydantic
    checks JSON bytes several times faster than the Python objects json.loads would make."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    raw = b"" if declared > MAX_BODY_BYTES else request.read(MAX_BODY_BYTES + 1)
    if declared > MAX_BODY_BYTES or len(raw) > MAX_BODY_BYTES:
        raise HttpError(413, f"The body is over {MAX_BODY_BYTES // 2**20} MiB: send smaller "
                             "batches.")
    try:
        batch = MetricsIn.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        invalid = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
        if invalid is not None:
            reason = invalid["msg"].removeprefix("Invalid JSON: ")
            raise HttpError(400, f"The body is not JSON rlab reads: {reason}"
                                 f"{SURROGATE_HINT if SURROGATE_ESCAPE.search(raw) else ''}.")
        raise ValidationError([
            {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False)])
    # A key with a NUL can only come as this escape: one scan of the bytes, and the keys are
    # read one by one only in the rare batch that has it.
    if b"\\u0000" in raw:
        problems = ((where, text_problem(key)) for where, key in keys(batch))
        errors = [{"loc": ["body", *where, "key"], "type": "text_unstorable",
                   "msg": text_refusal(problem)} for where, problem in problems if problem]
        if errors:
            raise ValidationError(errors)
    return batch


def keys(batch: MetricsIn) -> Iterator[tuple[tuple[str, int], str]]:
    """Each key of the batch with where it is: ("points", i) or ("series", i)."""
    for i, point in enumerate(batch.points):
        yield ("points", i), point["key"]
    for i, series in enumerate(batch.series):
        yield ("series", i), series.key


def inlined(schema: dict) -> dict:
    """A JSON schema with its definitions written in place of their references: ninja lists in
    the OpenAPI components only the models of the bodies it reads, and this one it does not."""
    definitions = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def samples(batch: MetricsIn) -> Iterator[tuple[str, int, float, datetime]]:
    """Every point of the batch, sent as a row or in a column, as a (key, step, value, time)
    tuple, the order of MetricSample; a point sent without a time is timed now. zip() turns
    columns into these tuples without a Python object of ours per point."""
    now = timezone.now()
    for point in batch.points:
        yield point["key"], point["step"], point["value"], point.get("time", now)
    for series in batch.series:
        yield from zip(repeat(series.key), series.steps, series.values,
                       series.times or repeat(now))


@router.post("/runs/{run_id}/metrics", response={200: WrittenOut, 409: ErrorOut, 413: ErrorOut,
                                                 **WRITE_ERRORS},
             summary="Log metric points",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": inlined(MetricsIn.model_json_schema())}}}})
def metrics_write(request: HttpRequest, run_id: int):
    """Store a batch of up to 100,000 points: rows `{"points": [{"key", "step", "value",
    "time"?}]}`, or one metric's columns `{"series": [{"key", "steps": [...], "values": [...],
    "times"?: [...]}]}` (more compact, and faster). Values must be finite, keys 1-250
    characters, steps 0 or more. A (key, step) logged again keeps the latest point (by time,
    then the greater value), as MLflow reports it; a batch sent again (a retry) changes
    nothing. Needs the member role; a run that has ended is a
    409."""
    run = get_run_for_user(request.user, run_id, Role.MEMBER)
    ensure_active(run)
    received = metrics_ingest(run_id=run.pk, points=samples(read_batch(request)))
    return {"received": received}


@router.get("/runs/{run_id}/metrics", response={200: MetricSeriesOut, **READ_ERRORS},
            summary="Read metric series")
def metrics_read(request: HttpRequest, run_id: int,
                 wanted_keys: list[str] | None = Query(None, alias="keys"),
                 start: int | None = None, end: int | None = None):
    """The run's series as its page charts them (the same body as its metrics.json): every
    metric, or those named by `keys` (repeated), with start <= step <= end, downsampled by the
    database to about 2,000 points each; each bucket keeps its lowest and highest point."""
    run = get_run_for_user(request.user, run_id)
    recorded = metric_keys(run)
    # Not a parameter called `keys`: ninja's dict.update() of the parameters would call it.
    wanted = set(wanted_keys or ())
    asked = recorded if wanted_keys is None else [key for key in recorded if key in wanted]
    read = metric_series(run, asked, start=start, end=end)
    return {"keys": recorded, "active": not run.is_terminal, "width": read.width,
            "series": read.series}
