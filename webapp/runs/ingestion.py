"""Writes of what a run reports, relayed by its worker or sent by a tracked run's script: metric
points, rollouts, checkpoints (and those a dead worker never relayed, recovered from the run's
folder) and log lines."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from itertools import chain, islice
from typing import Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from training.spec.checkpoint_names import checkpoint_step
from webapp.common.inputs import storable_json, storable_text
from webapp.runs.files import run_folder
from webapp.runs.metric_rollups import merge_sql, rollups_merge_portable, rollups_recount
from webapp.runs.models import (
    METRIC_KEY_MAX_LENGTH,
    Checkpoint,
    LogLine,
    MetricPoint,
    MetricSummary,
    Rollout,
    Run,
    RunStatus,
)

logger = logging.getLogger(__name__)


SMALL_METRIC_BATCH = 1000
# A write to a running run is a sign of life of whoever reports for it (the worker, a tracked
# run's script): recorded as its heartbeat, at most once in this interval, so that a script
# sending a batch a second does not also write its run's row every second.
SIGN_OF_LIFE_INTERVAL = timedelta(seconds=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def run_seen(*, run_id: int) -> None:
    """Record that whoever reports for the run is alive, if the run is running: its heartbeat
    becomes now, unless it is within SIGN_OF_LIFE_INTERVAL. This process remembers when it last
    did so for each run and does nothing at all until the interval has passed: a batch a
    second would otherwise pay an UPDATE each (more than the small batch's own INSERT)."""
    moment = time.monotonic()
    interval = SIGN_OF_LIFE_INTERVAL.total_seconds()
    if moment - _last_seen.get(run_id, -interval) < interval:
        return
    if len(_last_seen) > 10_000:  # runs that stopped writing
        for stale in [pk for pk, seen in _last_seen.items() if moment - seen >= interval]:
            _last_seen.pop(stale, None)
    _last_seen[run_id] = moment
    now = timezone.now()
    Run.objects.filter(pk=run_id, status=RunStatus.RUNNING,
                       heartbeat_at__lt=now - SIGN_OF_LIFE_INTERVAL).update(heartbeat_at=now)


_last_seen: dict[int, float] = {}  # run id → time.monotonic() of run_seen's last UPDATE


class MetricSample(NamedTuple):
    """One point. Any tuple of these four, in this order, is one too: the API passes the rows of
    its batches as zip()'s tuples, with no object per point."""

    key: str
    step: int
    value: float
    wall_time: datetime


def metrics_ingest(*, run_id: int, points: Iterable[tuple[str, int, float, datetime]]) -> int:
    """Store points (MetricSample rows). A (run, key, step) already stored, or sent twice in the
    batch, keeps the newest point: the latest wall time, then the greater value, which is the
    point MLflow's get_run reports. A replayed batch (the same points) changes nothing. Keys are
    cut to METRIC_KEY_MAX_LENGTH characters, and a character Postgres cannot store (a NUL from a
    trainer) becomes U+FFFD: the edges refuse such keys, and a run's own writes must never fail
    on one. Returns how many points there were.

    On Postgres a batch of up to SMALL_METRIC_BATCH points (a step's metrics, what scripts and
    the worker send) is one INSERT of arrays. A larger one is COPYed, in binary, into a
    temporary table and inserted from there in one statement. The table lives as long as the
    connection and is emptied before each use, so two batches in one transaction never mix.
    That insert is a plain one first, about a third cheaper for Postgres than one that checks
    each row for a conflict; a batch with a point already stored (a replay, a value logged
    again) or a (key, step) twice fails it, and is inserted again, in the same transaction,
    keeping the newest points.

    The run's MetricSummary (last, min, max, count of each key) is kept in the same statement
    (_summarised), or on SQLite in the same transaction (_summaries_merge_portable)."""
    run_seen(run_id=run_id)
    stored_keys: dict[str, str] = {}  # a batch repeats a few keys: each is checked once

    def stored(key: str) -> str:
        found = stored_keys.get(key)
        if found is None:
            found = stored_keys[key] = storable_text(key)[:METRIC_KEY_MAX_LENGTH]
        return found

    count = _metrics_store(run_id, points, stored)
    if stored_keys:
        metrics_stored.send(sender=MetricPoint, run_id=run_id,
                            keys=frozenset(stored_keys.values()))
    return count


# Sent after metrics_ingest stored a batch, with `run_id` and the `keys` it held: apps above
# this one act on new points here (a sweep's pruner reads its objective's latest values).
metrics_stored = Signal()


def _metrics_store(run_id: int, points: Iterable[tuple[str, int, float, datetime]],
                   stored: Callable[[str], str]) -> int:
    """metrics_ingest's writes, with `stored` turning a key into the key stored."""
    if connection.vendor != "postgresql":
        return _metrics_upsert_portable(run_id, ((stored(key), step, value, wall_time)
                                                 for key, step, value, wall_time in points))
    points = iter(points)
    first = list(islice(points, SMALL_METRIC_BATCH + 1))
    if len(first) <= SMALL_METRIC_BATCH:
        if first:
            keys, steps, values, times = zip(*first)
            keys = [stored(key) for key in keys]
            steps = [int(step) for step in steps]
            # A (key, step) twice in the batch (rare) is one row, the newest: an upsert may
            # touch a row once only. Sorting for that costs a batch without one a tenth more.
            once = len(set(zip(keys, steps))) == len(keys)
            with connection.cursor() as cursor:
                # Times as microseconds since 1970: a datetime's text may carry an offset that
                # Postgres does not read (beyond ±15:59), and one at the edge of year 1 or 9999
                # cannot be moved to UTC in Python.
                cursor.execute(_summarised(
                    f"{_INSERT} SELECT {'' if once else 'DISTINCT ON (key, step) '}%s, key, "
                    "step, value, timestamptz 'epoch' + micros * interval '1 microsecond' "
                    "FROM unnest(%s::text[], %s::int8[], %s::float8[], %s::int8[]) "
                    "AS batch(key, step, value, micros) "
                    f"{'' if once else 'ORDER BY key, step, micros DESC, value DESC '}"
                    f"{_KEEP_NEWEST}"),
                    [run_id, keys, steps, [float(value) for value in values],
                     [(moment - _EPOCH) // _MICROSECOND for moment in times]])
                _logged_again(cursor, run_id, cursor.fetchall())
        return len(first)
    points = chain(first, points)
    count = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS metric_incoming (key text, step bigint, "
                       "value float8, wall_time timestamptz)")
        cursor.execute("TRUNCATE metric_incoming")
        with cursor.copy("COPY metric_incoming FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "int8", "float8", "timestamptz"])
            for count, (key, step, value, wall_time) in enumerate(points, 1):
                copy.write_row((stored(key), step, value, wall_time))
        try:
            with transaction.atomic():
                cursor.execute(_summarised(f"{_INSERT} SELECT %s, key, step, value, wall_time "
                                           "FROM metric_incoming", large=True), [run_id])
        except IntegrityError:
            cursor.execute(_summarised(
                f"{_INSERT} SELECT DISTINCT ON (key, step) %s, key, step, value, "
                "wall_time FROM metric_incoming "
                f"ORDER BY key, step, wall_time DESC, value DESC {_KEEP_NEWEST}", large=True),
                [run_id])
        _logged_again(cursor, run_id, cursor.fetchall())
    return count


_INSERT = (f"INSERT INTO {MetricPoint._meta.db_table} AS stored "
           "(run_id, key, step, value, wall_time)")
# One upsert may touch a row once only: the batch's own repeats are dropped before (DISTINCT
# ON). A point no newer than the one stored (a replay) is no update at all.
_KEEP_NEWEST = ("ON CONFLICT (run_id, key, step) DO UPDATE "
                "SET value = excluded.value, wall_time = excluded.wall_time "
                "WHERE (excluded.wall_time, excluded.value) > (stored.wall_time, stored.value)")


_SUMMARY = MetricSummary._meta.db_table


def _summarised(insert: str, *, large: bool = False) -> str:
    """The INSERT of points `insert`, made to keep the run's MetricSummary and MetricRollup rows
    in the same statement: what it wrote (RETURNING: new points, and points that replaced one at
    their step) is aggregated per key and merged into the summary, and its new points into the
    rollups. A replayed point is no write, so changes nothing. The statement's rows are the
    points that replaced another: the value replaced may have been a minimum, a maximum or a
    bucket's extreme, so _logged_again counts them again.

    NaN is no minimum or maximum, and a NaN last value is stored as NULL (no value): a table
    sorts it with the runs that lack the metric."""
    return f"""WITH written AS ({insert}
        RETURNING run_id, key, step, value, wall_time, stored.xmax = 0 AS added),
    {merge_sql("written", large=large)},
    merged AS (
        INSERT INTO {_SUMMARY} AS summary
            (run_id, key, last_step, last_value, min_value, max_value, count)
        SELECT run_id, key, max(step),
               (array_agg(NULLIF(value, 'NaN') ORDER BY step DESC))[1],
               min(value) FILTER (WHERE value <> 'NaN'), max(value) FILTER (WHERE value <> 'NaN'),
               count(*) FILTER (WHERE added)
        FROM written GROUP BY run_id, key
        ORDER BY key  -- rows locked in one order: two batches of a run never deadlock
        ON CONFLICT (run_id, key) DO UPDATE SET
            last_value = CASE WHEN excluded.last_step >= summary.last_step
                              THEN excluded.last_value ELSE summary.last_value END,
            last_step = GREATEST(summary.last_step, excluded.last_step),
            min_value = LEAST(summary.min_value, excluded.min_value),
            max_value = GREATEST(summary.max_value, excluded.max_value),
            count = summary.count + excluded.count)
    SELECT key, step FROM written WHERE NOT added"""


def _logged_again(cursor, run_id: int, points: list[tuple[str, int]]) -> None:
    """Count again the summaries and the rollup buckets of `points` (key, step): each replaced
    a point at its step, whose value may have been an extreme."""
    steps: dict[str, list[int]] = {}
    for key, step in points:
        steps.setdefault(key, []).append(step)
    _summaries_recount(cursor, run_id, list(steps))
    rollups_recount(cursor, run_id, steps)


def _summaries_recount(cursor, run_id: int, keys: list[str]) -> None:
    """Summarise the run's `keys` again from all their points: for a key where a point was
    logged again at a step it had (rare: the batch path does it incrementally otherwise)."""
    if not keys:
        return
    points = MetricPoint._meta.db_table
    number = "value <> 'NaN'" if connection.vendor == "postgresql" else "1 = 1"
    own = f"FROM {points} p WHERE p.run_id = {_SUMMARY}.run_id AND p.key = {_SUMMARY}.key"
    marks = ", ".join(["%s"] * len(keys))
    cursor.execute(
        f"UPDATE {_SUMMARY} SET last_step = (SELECT max(step) {own}), "
        f"last_value = (SELECT CASE WHEN {number} THEN value END {own} "
        "ORDER BY step DESC LIMIT 1), "
        f"min_value = (SELECT min(value) {own} AND {number}), "
        f"max_value = (SELECT max(value) {own} AND {number}), "
        f"count = (SELECT count(*) {own}) WHERE run_id = %s AND key IN ({marks})",
        [run_id, *keys])


def _summaries_merge_portable(cursor, run_id: int,
                              newest: dict[tuple[str, int], tuple[datetime, float]]) -> list[str]:
    """_summarised's work on another database (SQLite): a key whose batch only goes beyond its
    summary's last step (a run logging on: the usual case) has only new points, merged from the
    batch; any other key (a replay, a step logged again, steps out of order) is counted again
    from its points. Returns those keys."""
    by_key: dict[str, list[tuple[int, float]]] = {}
    for (key, step), (_, value) in newest.items():
        by_key.setdefault(key, []).append((step, value))
    known = {summary.key: summary for summary in
             MetricSummary.objects.filter(run_id=run_id, key__in=list(by_key))}
    merged, again = [], []
    for key, points in by_key.items():
        summary = known.get(key)
        if summary is not None and min(step for step, _ in points) <= summary.last_step:
            again.append(key)
            continue
        numbers = [value for _, value in points if not math.isnan(value)]
        if summary is not None:
            numbers += [v for v in (summary.min_value, summary.max_value) if v is not None]
        last_step, last_value = max(points)
        merged.append(MetricSummary(
            run_id=run_id, key=key, last_step=last_step,
            last_value=None if math.isnan(last_value) else last_value,
            min_value=min(numbers, default=None), max_value=max(numbers, default=None),
            count=len(points) + (summary.count if summary is not None else 0)))
    MetricSummary.objects.bulk_create(
        merged, update_conflicts=True, unique_fields=["run", "key"],
        update_fields=["last_step", "last_value", "min_value", "max_value", "count"])
    # the recount must see this batch's points: they were written before, in this transaction
    _summaries_recount(cursor, run_id, again)
    return again


def _metrics_upsert_portable(run_id: int,
                             points: Iterable[tuple[str, int, float, datetime]]) -> int:
    """metrics_ingest on another database (SQLite): the batch's newest point per (key, step),
    upserted row by row with the same rule."""
    count = 0
    newest: dict[tuple[str, int], tuple[datetime, float]] = {}
    for count, (key, step, value, wall_time) in enumerate(points, 1):
        point = (wall_time, float(value))
        if newest.get((key, int(step)), point) <= point:
            newest[(key, int(step))] = point
    table = MetricPoint._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} AS stored (run_id, key, step, value, wall_time) "
            "VALUES (%s, %s, %s, %s, %s) " + _KEEP_NEWEST,
            [(run_id, key, step, value, adapt(wall_time))
             for (key, step), (wall_time, value) in newest.items()])
        again = set(_summaries_merge_portable(cursor, run_id, newest))
        rollups_merge_portable(cursor, run_id, (
            (key, step, value, wall_time)
            for (key, step), (wall_time, value) in newest.items() if key not in again))
        steps_again: dict[str, list[int]] = {key: [] for key in again}
        for key, step in newest:
            if key in again:
                steps_again[key].append(step)
        rollups_recount(cursor, run_id, steps_again)
    return count


def rollouts_ingest(*, run_id: int, step: int, items: Iterable[dict[str, Any]]) -> int:
    """Store one step's rollouts. A group is degenerate when all its rewards are equal: the
    item's `group_degenerate` when it has one (the trainer saw the whole group, though it may log
    only part of it), else decided from this batch's items of the same group (outside scripts
    send whole groups); a group of one is not degenerate.

    What Postgres cannot store is replaced rather than refused, since a model can generate it:
    a NUL or a lone surrogate in the text becomes U+FFFD, and NaN or ±Infinity in the JSON
    columns null (webapp.common.inputs). The API refuses both before they get here."""
    run_seen(run_id=run_id)
    items = list(items)
    group_rewards: dict[int, list[float]] = {}
    for item in items:
        group_rewards.setdefault(int(item.get("group", 0)), []).append(
            float(item.get("reward", 0.0)))

    def degenerate(item: dict[str, Any]) -> bool:
        if item.get("group_degenerate") is not None:
            return bool(item["group_degenerate"])
        rewards = group_rewards[int(item.get("group", 0))]
        return len(rewards) > 1 and max(rewards) == min(rewards)

    rows = [
        Rollout(
            run_id=run_id, step=step, group=int(item.get("group", 0)),
            sample_index=int(item.get("sample_index", 0)),
            prompt_id=storable_text(str(item.get("prompt_id", "")))[:200],
            prompt=storable_text(str(item.get("prompt", ""))),
            completion=storable_text(str(item.get("completion", ""))),
            reward=float(item.get("reward", 0.0)),
            rewards=storable_json(item.get("rewards") or {}), advantage=item.get("advantage"),
            completion_tokens=item.get("completion_tokens"),
            truncated=bool(item.get("truncated", False)),
            extra=storable_json(item.get("extra") or {}),
            token_data=storable_json(item.get("tokens") or None),
            group_degenerate=degenerate(item),
        )
        for item in items
    ]
    Rollout.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    return len(rows)


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str
    final: bool = False


def checkpoints_ingest(*, run_id: int, checkpoints: Iterable[CheckpointSaved]) -> int:
    """Record saved checkpoints, one per (run, step): a step seen again takes the path and final
    flag of the later report, so a replayed batch changes nothing."""
    # One row per step: Postgres refuses an upsert that touches the same row twice.
    latest = {c.step: c for c in checkpoints}
    rows = [Checkpoint(run_id=run_id, step=c.step, path=c.path, final=c.final)
            for c in latest.values()]
    Checkpoint.objects.bulk_create(rows, update_conflicts=True, unique_fields=["run", "step"],
                                   update_fields=["path", "final"])
    return len(rows)


def checkpoints_recover(*, run_id: int) -> int:
    """Record the checkpoints in the run's folder that the database never heard of, for a run
    whose worker died. The training process saves (and deletes older checkpoints, keeping
    keep_checkpoints) whether or not the worker relaying its events keeps up: a worker killed
    while it lagged leaves rows for folders already deleted and folders with no row, and the
    run could not be resumed. A folder named checkpoint-<step> is complete (training renames it
    into place once written). Nothing when this machine cannot see the folder. Returns how many
    were recorded."""
    run = Run.objects.filter(pk=run_id).only("pk", "created_at").first()
    if run is None:
        return 0
    try:
        entries = list(os.scandir(run_folder(run.pk, run.created_at)))
    except OSError:
        return 0
    known = set(Checkpoint.objects.filter(run_id=run_id).values_list("step", flat=True))
    found = [CheckpointSaved(step=step, path=entry.path) for entry in entries
             if (step := checkpoint_step(entry.name)) is not None
             and entry.is_dir(follow_symlinks=False) and step not in known]
    if found:
        checkpoints_ingest(run_id=run_id, checkpoints=found)
        logger.info("run %s: recorded checkpoints found in its folder at steps %s", run_id,
                    ", ".join(str(c.step) for c in sorted(found, key=lambda c: c.step)))
    return len(found)


def logs_append(*, run_id: int, lines: Iterable[tuple[datetime, str, str, str]]) -> int:
    """Append (time, level, source, message) lines; a NUL or a lone surrogate in a line (a
    trainer's output) becomes U+FFFD, so that the line is kept rather than refused."""
    rows = [LogLine(run_id=run_id, time=t, level=storable_text(level)[:10],
                    source=storable_text(source)[:10], message=storable_text(message)[:10_000])
            for t, level, source, message in lines]
    LogLine.objects.bulk_create(rows, batch_size=1000)
    return len(rows)
