"""Chart series, downsampled by the database: a chart of a million steps costs the web process
about 2,000 points.

A step range is cut into at most TARGET_BUCKETS buckets of one width; per metric and bucket the
database returns the lowest and the highest point (with their steps and wall times), so a spike
or a dip of a single step still shows, and each series ends with its last point, the value a live
chart reads. A range of at most TARGET_BUCKETS steps comes back whole: that is how a zoomed chart
gets real detail.

Widths are powers of two and buckets sit at multiples of their width, so a bucket always covers
the same steps. Buckets are read from the rollups kept as points arrive (webapp.runs.metric_rollups:
extremes per 8, 16, 32, … steps), a row per bucket, so even the first chart of a run of a million
steps reads about a thousand rows per metric; only a bucket that the range asked for cuts, at its
edges, and buckets narrower than 8 steps, are counted from the points.

Postgres finds each bucket's extremes in one pass (`min` of `ARRAY[value, step, time]`); SQLite,
the embedded default, in two (its `min`/`max` take the other columns from the row they pick).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter

from asgiref.sync import sync_to_async
from django.db import connection, transaction

from webapp.common.csv_cells import csv_cell
from webapp.runs.metric_rollups import FINITE, rollup_extremes, shift_for
from webapp.runs.models import MetricPoint, Run

TARGET_BUCKETS = 1000
CSV_PAGE = 20_000
_FIRST_STEP, _LAST_STEP = -(2**63), 2**63 - 1  # a step range with no bound

TABLE = MetricPoint._meta.db_table

Point = tuple[int, float, float]  # step, value, wall time (Unix seconds, to the millisecond)
Bucket = tuple[int, Point, Point]  # bucket index, lowest point, highest point
Columns = tuple[list, list, list]  # steps, values and wall times, in step order


@dataclass(frozen=True)
class SeriesRead:
    """Series as charts take them, {key: [steps, values, wall times]} (NaN and ±inf as None),
    and the bucket width in steps: 1 means every point is there."""

    series: dict[str, list[list]]
    width: int


@dataclass(frozen=True)
class Span:
    """Where a metric's points lie inside an asked range: its first step and its last point."""

    first: int
    last: Point


def recorded_keys(run_id: int) -> list[str]:
    """Every metric key of a run, sorted. The (run, key, step) index is walked one key at a time
    (a loose index scan), so a run with millions of points answers in a millisecond."""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH RECURSIVE k(key) AS (
                SELECT min(key) FROM {TABLE} WHERE run_id = %s
                UNION ALL
                SELECT (SELECT min(key) FROM {TABLE} WHERE run_id = %s AND key > k.key)
                FROM k WHERE k.key IS NOT NULL)
            SELECT key FROM k WHERE key IS NOT NULL""", [run_id, run_id])
        return [key for (key,) in cursor.fetchall()]


def bucket_width(first: int, last: int) -> int:
    """The smallest power of two that cuts first..last into at most TARGET_BUCKETS buckets.

    >>> bucket_width(1, 1000), bucket_width(1, 1001), bucket_width(1, 100_000)
    (1, 2, 128)
    """
    width = 1
    while last - first + 1 > width * TARGET_BUCKETS:
        width *= 2
    return width


def read_series(run: Run, keys: Iterable[str], *, start: int | None = None,
                end: int | None = None) -> SeriesRead:
    """The metrics' points with start <= step <= end (either bound may be left out),
    downsampled when the range holds more than TARGET_BUCKETS steps."""
    spans = key_spans(run.pk, keys, start=start, end=end)
    if not spans:
        return SeriesRead(series={}, width=1)
    width = bucket_width(min(s.first for s in spans.values()),
                         max(s.last[0] for s in spans.values()))
    if width == 1:
        points = _every_point(run.pk, spans)
        return SeriesRead(series={key: _columns(points[key]) for key in spans}, width=1)
    return SeriesRead(series=_downsampled(spans, run.pk, width, start=start, end=end),
                      width=width)


def key_spans(run_id: int, keys: Iterable[str], *, start: int | None = None,
              end: int | None = None) -> dict[str, Span]:
    """Each metric's first step and last point within start..end; metrics with no point there
    are left out. Two index probes and one lookup per metric, whatever the run's length."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    lo = _FIRST_STEP if start is None else start
    hi = _LAST_STEP if end is None else end
    values = ", ".join(["(%s)"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH k(key) AS (VALUES {values}),
            s AS (
                SELECT k.key,
                  (SELECT min(step) FROM {TABLE} WHERE run_id = %s AND key = k.key
                     AND step >= %s) AS first_step,
                  (SELECT max(step) FROM {TABLE} WHERE run_id = %s AND key = k.key
                     AND step <= %s) AS last_step
                FROM k)
            SELECT s.key, s.first_step, m.step, m.value, {_epoch('m.wall_time')}
            FROM s JOIN {TABLE} m ON m.run_id = %s AND m.key = s.key AND m.step = s.last_step
            WHERE s.first_step <= s.last_step""",
            [*keys, run_id, lo, run_id, hi, run_id])
        found = {key: Span(first=first, last=(step, value, round(wall, 3)))
                 for key, first, step, value, wall in cursor.fetchall()}
    return {key: found[key] for key in keys if key in found}


def _every_point(run_id: int, spans: dict[str, Span]) -> dict[str, list[Point]]:
    lo = min(span.first for span in spans.values())
    hi = max(span.last[0] for span in spans.values())
    keys = ", ".join(["%s"] * len(spans))
    points: dict[str, list[Point]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT key, step, value, {_epoch('wall_time')} FROM {TABLE}
            WHERE run_id = %s AND key IN ({keys}) AND step BETWEEN %s AND %s
            ORDER BY key, step""", [run_id, *spans, lo, hi])
        for key, step, value, wall in cursor.fetchall():
            points[key].append((step, value, round(wall, 3)))
    return points


def _downsampled(spans: dict[str, Span], run_id: int, width: int, *, start: int | None,
                 end: int | None) -> dict[str, list[list]]:
    """Each metric's chart columns, from buckets of `width` steps. A bucket wholly inside the
    range asked for is one rollup row (rollup_extremes); the partial buckets at the
    range's edges, and every bucket when the width is below the narrowest rollup's, are counted
    from the points in the range."""
    lo = _FIRST_STEP if start is None else start
    hi = _LAST_STEP if end is None else end
    shift = shift_for(width)
    from_rollups: list[tuple[str, int, int]] = []  # key, first and last chart bucket
    from_points: list[tuple[str, int, int]] = []  # key, first and last step
    for key, span in spans.items():
        first, last = span.first, span.last[0]
        inner_first = max(first // width, -(-lo // width))
        inner_last = min(last // width, (hi + 1) // width - 1)
        if shift is None or inner_first > inner_last:
            from_points.append((key, first, last))
            continue
        from_rollups.append((key, inner_first, inner_last))
        if first < inner_first * width:
            from_points.append((key, first, inner_first * width - 1))
        if last >= (inner_last + 1) * width:
            from_points.append((key, (inner_last + 1) * width, last))
    buckets: dict[str, list[Bucket]] = defaultdict(list)
    for key, bucket in _aggregate(run_id, from_points, width):
        buckets[key].append(bucket)
    if shift is not None:
        for key, index, low, high in rollup_extremes(run_id, from_rollups, shift, width):
            buckets[key].append((index, low, high))
    return {key: _joined(_bucket_columns(buckets[key]), span.last) for key, span in spans.items()}


def _aggregate(run_id: int, ranges: list[tuple[str, int, int]], width: int,
               ) -> list[tuple[str, Bucket]]:
    """Per metric and bucket of `width` steps inside the ranges (key, first step, last step):
    the lowest and the highest finite point."""
    if not ranges:
        return []
    # Offsetting steps by a multiple of the width makes them non-negative, so SQL's integer
    # division (which truncates) agrees with Python's floor division.
    origin = min(lo for _, lo, _ in ranges) // width * width
    base = origin // width
    if connection.vendor == "postgresql":
        rows = _aggregate_postgres(run_id, ranges, origin, width)
    else:
        rows = _aggregate_sqlite(run_id, ranges, origin, width)
    return [(key, (base + b, low, high)) for key, b, low, high in rows]


_BUCKET = "(m.step - CAST(%s AS BIGINT)) / CAST(%s AS BIGINT)"
_FINITE_VALUE = "m.value BETWEEN %s AND %s"


def _aggregate_postgres(run_id: int, ranges: list[tuple[str, int, int]], origin: int,
                        width: int) -> list[tuple[str, int, Point, Point]]:
    """One index range scan per range. JIT is off: it compiles for longer than these queries
    run."""
    point = f"ARRAY[m.value, m.step, {_epoch('m.wall_time')}]"
    sql = f"""
        WITH {_ranges_cte(ranges)}
        SELECT r.key, a.bucket, a.low, a.high FROM r CROSS JOIN LATERAL (
            SELECT {_BUCKET} AS bucket, min({point}) AS low, max({point}) AS high
            FROM {TABLE} m
            WHERE m.run_id = %s AND m.key = r.key AND m.step BETWEEN r.lo AND r.hi
              AND {_FINITE_VALUE}
            GROUP BY 1) a"""
    params = [*_flat(ranges), origin, width, run_id, -FINITE, FINITE]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return [(key, b, _point(low), _point(high)) for key, b, low, high in cursor.fetchall()]


def _aggregate_sqlite(run_id: int, ranges: list[tuple[str, int, int]], origin: int,
                      width: int) -> list[tuple[str, int, Point, Point]]:
    """Two passes: SQLite's min() and max() take the query's other columns from the row they
    pick, one aggregate at a time."""
    extremes = {}
    with connection.cursor() as cursor:
        for pick in ("min", "max"):
            cursor.execute(f"""
                WITH {_ranges_cte(ranges)}
                SELECT m.key, {_BUCKET} AS bucket, {pick}(m.value), m.step,
                       {_epoch('m.wall_time')}
                FROM r JOIN {TABLE} m ON m.run_id = %s AND m.key = r.key
                  AND m.step BETWEEN r.lo AND r.hi AND {_FINITE_VALUE}
                GROUP BY m.key, bucket""",
                [*_flat(ranges), origin, width, run_id, -FINITE, FINITE])
            extremes[pick] = {(key, b): (step, value, round(wall, 3))
                              for key, b, value, step, wall in cursor.fetchall()}
    return [(key, b, low, extremes["max"][key, b]) for (key, b), low in extremes["min"].items()]


def _point(row: list[float]) -> Point:
    value, step, wall = row
    return int(step), value, round(wall, 3)


def _bucket_columns(buckets: list[Bucket]) -> Columns:
    """Chart columns of buckets: each bucket's lowest and highest point in step order.

    >>> _bucket_columns([(1, (9, 2.0, 0.5), (9, 2.0, 0.5)), (0, (3, -1.0, 0.0), (1, 5.0, 0.0))])
    ([1, 3, 9], [5.0, -1.0, 2.0], [0.0, 0.0, 0.5])
    """
    points: list[Point] = []
    for _, low, high in sorted(buckets, key=itemgetter(0)):
        if low[0] < high[0]:
            points += (low, high)
        elif low[0] > high[0]:
            points += (high, low)
        else:
            points.append(low)
    if not points:
        return [], [], []
    steps, values, walls = zip(*points)
    return list(steps), list(values), list(walls)


def _joined(columns: Columns, last: Point) -> list[list]:
    """One metric's chart columns [steps, values, wall times], then its last point, whose value
    may be NaN or ±inf (None: JSON has no such numbers).

    >>> _joined(([1, 3, 9], [5.0, -1.0, 2.0], [0.0, 0.0, 0.0]), (12, math.nan, 0.0))
    [[1, 3, 9, 12], [5.0, -1.0, 2.0, None], [0.0, 0.0, 0.0, 0.0]]
    """
    steps, values, walls = (list(column) for column in columns)
    values: list[float | None]
    if not steps or steps[-1] < last[0]:
        steps.append(last[0])
        values.append(last[1] if math.isfinite(last[1]) else None)
        walls.append(last[2])
    return [steps, values, walls]


def _columns(points: list[Point]) -> list[list]:
    """[steps, values, wall times] of every point, as _joined gives them."""
    if not points:
        return [[], [], []]
    steps, values, walls = zip(*points)
    return [list(steps), [value if math.isfinite(value) else None for value in values],
            list(walls)]


def _epoch(column: str) -> str:
    """SQL for a timestamp column as Unix seconds (a float)."""
    if connection.vendor == "postgresql":
        return f"date_part('epoch', {column})"
    return f"(julianday({column}) - 2440587.5) * 86400.0"  # Django stores UTC text in SQLite


def _ranges_cte(ranges: list[tuple[str, int, int]]) -> str:
    rows = ", ".join(["(%s, CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(ranges))
    return f"r(key, lo, hi) AS (VALUES {rows})"


def _flat(ranges: list[tuple[str, int, int]]) -> list:
    return [item for row in ranges for item in row]


async def metrics_csv_chunks(run_id: int, keys: list[str]) -> AsyncIterator[str]:
    """CSV of every point of `keys` (key, step, value, wall_time), a page of CSV_PAGE rows at a
    time in key and step order; each page seeks on the (run, key, step) index past the last, so
    millions of points stream in constant memory. Asynchronous because under ASGI Django reads a
    synchronous iterator whole before it sends the first byte."""
    yield "key,step,value,wall_time\r\n"
    for key in keys:
        cell = csv_cell(key)
        after = None
        while True:
            rows = await sync_to_async(_points_page)(run_id, key, after)
            buffer = io.StringIO()
            csv.writer(buffer).writerows((cell, step, value, wall.isoformat())
                                         for step, value, wall in rows)
            yield buffer.getvalue()
            if len(rows) < CSV_PAGE:
                break
            after = rows[-1][0]


def _points_page(run_id: int, key: str, after: int | None) -> list[tuple[int, float, datetime]]:
    points = MetricPoint.objects.filter(run_id=run_id, key=key)
    if after is not None:
        points = points.filter(step__gt=after)
    return list(points.order_by("step").values_list("step", "value", "wall_time")[:CSV_PAGE])
