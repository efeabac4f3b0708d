"""Metric rollups: each metric's lowest and highest finite point per bucket of 2**shift steps,
at every power-of-two width from 8 to 2**21 (SHIFTS), kept as points arrive
(webapp.runs.ingestion), so that a chart of a long run reads its at most 1,000 buckets as they
are stored, a row each, instead of every point, even the first time a run is opened
(webapp.runs.metric_series).

A bucket holds steps bucket·2**shift to (bucket+1)·2**shift − 1, so `bucket = step >> shift`
(an arithmetic shift: floor division, negative steps included). The lowest point is the one with
the lowest (value, step), the highest the one with the highest (value, step); NaN and ±inf are
in no bucket, as charts cannot draw them. Each point lands in one bucket per width: about one
row for every 4 points (1/8 + 1/16 + …).

How they are kept:
- new points (the usual case) are merged into their buckets: a bucket's extremes only ever move
  outwards (MERGE_EXTREMES), in the same statement as the points on Postgres;
- a point logged again at a step it had, with another value, may have been a bucket's extreme:
  the buckets holding such steps are counted again from the points (rollups_recount).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.db import connection

from webapp.runs.models import MetricPoint, MetricRollup

SHIFTS = tuple(range(3, 22))  # bucket widths 8, 16, 32, … 2,097,152 steps
# The largest float: beyond ±FINITE lie NaN and ±inf, which charts cannot draw.
FINITE = 1.7976931348623157e308

TABLE = MetricRollup._meta.db_table
# Wall times are kept as Unix seconds to the millisecond, as charts take them: rounded once.
_SECONDS_POSTGRES = "round(({})::numeric, 3)::float8"  # of a date_part('epoch', …)
_SECONDS_SQLITE = "round((julianday({}) - 2440587.5) * 86400.0, 3)"  # stored as UTC text
_POINTS = MetricPoint._meta.db_table
_COLUMNS = ("run_id, key, shift, bucket, low_step, low_value, low_time, "
            "high_step, high_value, high_time")

# A bucket's extremes after new points arrive in it: the lower of the two lows and the higher
# of the two highs, by (value, step). Postgres and SQLite both compare rows of values.
_LOWER = "(excluded.low_value, excluded.low_step) < (rollup.low_value, rollup.low_step)"
_HIGHER = "(excluded.high_value, excluded.high_step) > (rollup.high_value, rollup.high_step)"
MERGE_EXTREMES = (
    "ON CONFLICT (run_id, key, shift, bucket) DO UPDATE SET " + ", ".join(
        [f"{side}_{column} = CASE WHEN {test} THEN excluded.{side}_{column} "
         f"ELSE rollup.{side}_{column} END"
         for side, test in (("low", _LOWER), ("high", _HIGHER))
         for column in ("step", "value", "time")]))


def shift_for(width: int) -> int | None:
    """The widest rollup no wider than a chart bucket of `width` steps (a power of two), as its
    shift; None when the chart's buckets are narrower than every rollup's.

    >>> shift_for(4), shift_for(8), shift_for(128), shift_for(2**40)
    (None, 3, 7, 21)
    """
    fitting = [shift for shift in SHIFTS if 2**shift <= width]
    return fitting[-1] if fitting else None


def merge_sql(written: str, *, large: bool) -> str:
    """Postgres WITH-clause entries that merge the new finite points of `written` (a CTE with
    run_id, key, step, value, wall_time and `added`: false for a point that replaced one, which
    rollups_recount handles) into every width's buckets.

    A `large` batch aggregates each width from the one below (8 from the points, 64 from the 8s,
    …), so its points are aggregated about once, not once per width; a small one (a step's
    metrics) aggregates every width from its points at once, a statement that Postgres plans in
    a fraction of the time. Only the extremes' wall times are rounded."""
    point = "ARRAY[value, step, date_part('epoch', wall_time)]"
    new = f"FROM {written} WHERE added AND value BETWEEN {-FINITE!r} AND {FINITE!r}"
    if large:
        widths = [f"""rollup_{SHIFTS[0]} AS (
            SELECT run_id, key, step >> {SHIFTS[0]} AS bucket, min({point}) AS low,
                   max({point}) AS high {new}
            GROUP BY 1, 2, 3)"""]
        for below, shift in zip(SHIFTS, SHIFTS[1:]):
            widths.append(f"""rollup_{shift} AS (
            SELECT run_id, key, bucket >> {shift - below} AS bucket, min(low) AS low,
                   max(high) AS high
            FROM rollup_{below} GROUP BY 1, 2, 3)""")
        batch = " UNION ALL ".join(f"SELECT {shift} AS shift, * FROM rollup_{shift}"
                                   for shift in SHIFTS)
        entries = ",\n    ".join(widths) + ",\n    "
    else:
        batch = f"""SELECT s.shift, w.run_id, w.key, w.step >> s.shift AS bucket,
                   min(w.point) AS low, max(w.point) AS high
            FROM (SELECT run_id, key, step, {point} AS point {new}) w
              CROSS JOIN unnest(ARRAY{list(SHIFTS)}::int[]) AS s(shift)
            GROUP BY 1, 2, 3, 4"""
        entries = ""
    seconds = _SECONDS_POSTGRES.format
    return entries + f"""rolled AS (
        INSERT INTO {TABLE} AS rollup ({_COLUMNS})
        SELECT run_id, key, shift, bucket, low[2]::bigint, low[1], {seconds('low[3]')},
               high[2]::bigint, high[1], {seconds('high[3]')}
        FROM ({batch}) batch
        ORDER BY key, shift, bucket  -- rows locked in one order: two batches never deadlock
        {MERGE_EXTREMES})"""


def rollups_merge_portable(cursor, run_id: int,
                           points: Iterable[tuple[str, int, float, datetime]]) -> None:
    """merge_sql's work on another database (SQLite): the extremes of new points, found here,
    merged into the stored buckets."""
    extremes: dict[tuple[str, int, int], list] = {}
    for key, step, value, wall_time in points:
        if not math.isfinite(value):
            continue
        point = (value, step, round(wall_time.timestamp(), 3))
        for shift in SHIFTS:
            found = extremes.get((key, shift, step >> shift))
            if found is None:
                extremes[key, shift, step >> shift] = [point, point]
            elif point[:2] < found[0][:2]:
                found[0] = point
            elif point[:2] > found[1][:2]:
                found[1] = point
    cursor.executemany(
        f"INSERT INTO {TABLE} AS rollup ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
        f"%s, %s) {MERGE_EXTREMES}",
        [(run_id, key, shift, bucket, low[1], low[0], low[2], high[1], high[0], high[2])
         for (key, shift, bucket), (low, high) in sorted(extremes.items())])


def rollups_recount(cursor, run_id: int, steps: Mapping[str, Iterable[int]]) -> None:
    """Count again, from the points, every bucket that holds one of `steps` ({key: steps}): a
    point there was logged again with another value, which may have been an extreme."""
    ranges = [(key, shift, lo, hi) for key, key_steps in steps.items()
              for shift in SHIFTS for lo, hi in _bucket_runs({s >> shift for s in key_steps})]
    if not ranges:
        return
    for chunk in (ranges[i:i + 300] for i in range(0, len(ranges), 300)):
        rows = ", ".join(["(%s, %s, CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(chunk))
        values = [item for row in chunk for item in row]
        cte = f"WITH r(key, shift, lo, hi) AS (VALUES {rows})"
        if connection.vendor == "postgresql":  # a join: one index range scan per range
            cursor.execute(f"""{cte} DELETE FROM {TABLE} x USING r WHERE x.run_id = %s
                AND x.key = r.key AND x.shift = r.shift AND x.bucket BETWEEN r.lo AND r.hi""",
                [*values, run_id])
        else:
            cursor.execute(f"""{cte} DELETE FROM {TABLE} WHERE run_id = %s AND EXISTS (
                SELECT 1 FROM r WHERE r.key = {TABLE}.key AND r.shift = {TABLE}.shift
                  AND {TABLE}.bucket BETWEEN r.lo AND r.hi)""", [*values, run_id])
        _insert_counted(cursor, cte, values, run_id)


def _insert_counted(cursor, cte: str, values: list, run_id: int) -> None:
    """Insert the buckets of the ranges in `cte` (key, shift, lo, hi: bucket numbers), counted
    from the run's points."""
    finite = f"p.value BETWEEN {-FINITE!r} AND {FINITE!r}"
    joined = f"""FROM r JOIN {_POINTS} p ON p.run_id = %s AND p.key = r.key
                 AND p.step BETWEEN {_first_step('r.lo', 'r.shift')}
                 AND {_last_step('r.hi', 'r.shift')} AND {finite}"""
    if connection.vendor == "postgresql":
        seconds = _SECONDS_POSTGRES.format("date_part('epoch', p.wall_time)")
        point = f"ARRAY[p.value, p.step, {seconds}]"
        cursor.execute(f"""{cte}
            INSERT INTO {TABLE} ({_COLUMNS})
            SELECT run_id, key, shift, bucket, low[2]::bigint, low[1], low[3],
                   high[2]::bigint, high[1], high[3]
            FROM (SELECT p.run_id, p.key, r.shift, p.step >> r.shift AS bucket,
                         min({point}) AS low, max({point}) AS high {joined}
                  GROUP BY 1, 2, 3, 4) counted""", [*values, run_id])
        return
    # SQLite: each bucket's row, then its extremes, each the first point in (value, step) order.
    cursor.execute(f"""{cte}
        INSERT INTO {TABLE} ({_COLUMNS})
        SELECT p.run_id, p.key, r.shift, p.step >> r.shift, 0, 0, 0, 0, 0, 0 {joined}
        GROUP BY p.run_id, p.key, r.shift, p.step >> r.shift""", [*values, run_id])
    in_bucket = f"""FROM {_POINTS} p WHERE p.run_id = rollup.run_id AND p.key = rollup.key
        AND {finite} AND p.step BETWEEN {_first_step('rollup.bucket', 'rollup.shift')}
        AND {_last_step('rollup.bucket', 'rollup.shift')}"""
    epoch = _SECONDS_SQLITE.format("p.wall_time")
    cursor.execute(f"""{cte}
        UPDATE {TABLE} AS rollup SET
          (low_step, low_value, low_time) = (SELECT p.step, p.value, {epoch} {in_bucket}
                                             ORDER BY p.value, p.step LIMIT 1),
          (high_step, high_value, high_time) = (SELECT p.step, p.value, {epoch} {in_bucket}
                                                ORDER BY p.value DESC, p.step DESC LIMIT 1)
        WHERE rollup.run_id = %s AND EXISTS (
            SELECT 1 FROM r WHERE r.key = rollup.key AND r.shift = rollup.shift
              AND rollup.bucket BETWEEN r.lo AND r.hi)""", [*values, run_id])


def _first_step(bucket: str, shift: str) -> str:
    """SQL for the first step of a bucket."""
    return f"({bucket} << {shift})"


def _last_step(bucket: str, shift: str) -> str:
    """SQL for the last step of a bucket, which overflows no 64-bit integer."""
    return f"(({bucket} << {shift}) + ((1 << {shift}) - 1))"


def _bucket_runs(buckets: set[int]) -> list[tuple[int, int]]:
    """Runs of consecutive bucket numbers, in order.

    >>> _bucket_runs({5, 1, 2, 3, 9})
    [(1, 3), (5, 5), (9, 9)]
    """
    runs: list[tuple[int, int]] = []
    for bucket in sorted(buckets):
        if runs and runs[-1][1] == bucket - 1:
            runs[-1] = (runs[-1][0], bucket)
        else:
            runs.append((bucket, bucket))
    return runs


def rollup_extremes(run_id: int, ranges: list[tuple[str, int, int]], shift: int, width: int,
                    ) -> list[tuple[str, int, tuple, tuple]]:
    """Per metric and chart bucket of `width` steps (a power of two ≥ 2**shift): the lowest and
    the highest point, from the rollups of `shift`, in step order. `ranges` are (key, first
    chart bucket, last chart bucket). Points are (step, value, wall time).

    A chart bucket is one rollup row, read as stored (one index range scan per metric), unless
    the chart is wider than the widest rollup: then the rows of each chart bucket are merged."""
    if not ranges:
        return []
    merge = int(math.log2(width)) - shift  # chart bucket = rollup bucket >> merge
    rows = ", ".join(["(%s, CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(ranges))
    values = [item for key, first, last in ranges
              for item in (key, first << merge, ((last + 1) << merge) - 1)]
    cte = f"WITH r(key, lo, hi) AS (VALUES {rows})"
    joined = f"""FROM r JOIN {TABLE} x ON x.run_id = %s AND x.key = r.key AND x.shift = %s
                 AND x.bucket BETWEEN r.lo AND r.hi"""
    columns = "x.low_step, x.low_value, x.low_time, x.high_step, x.high_value, x.high_time"
    with connection.cursor() as cursor:
        if merge == 0:
            cursor.execute(f"{cte} SELECT x.key, x.bucket, {columns} {joined} "
                           "ORDER BY x.key, x.bucket", [*values, run_id, shift])
            return [(key, bucket, (low_step, low_value, low_time),
                     (high_step, high_value, high_time))
                    for key, bucket, low_step, low_value, low_time, high_step, high_value,
                    high_time in cursor.fetchall()]
        if connection.vendor != "postgresql":
            # SQLite: merged here, as its min() and max() leave ties to chance.
            cursor.execute(f"{cte} SELECT x.key, x.bucket >> {merge}, {columns} {joined}",
                           [*values, run_id, shift])
            extremes: dict[tuple[str, int], list[tuple]] = {}
            for key, bucket, *sides in cursor.fetchall():
                low, high = (sides[1], sides[0], sides[2]), (sides[4], sides[3], sides[5])
                found = extremes.setdefault((key, bucket), [low, high])
                found[0], found[1] = min(found[0], low), max(found[1], high)
            return [(key, bucket, (low[1], low[0], low[2]), (high[1], high[0], high[2]))
                    for (key, bucket), (low, high) in extremes.items()]
        # Scalars, not the arrays: a float array costs the client more than three floats.
        low = "min(ARRAY[x.low_value, x.low_step, x.low_time])"
        high = "max(ARRAY[x.high_value, x.high_step, x.high_time])"
        cursor.execute(f"""{cte}
            SELECT x.key, x.bucket >> {merge}, ({low})[2]::bigint, ({low})[1], ({low})[3],
                   ({high})[2]::bigint, ({high})[1], ({high})[3] {joined}
            GROUP BY 1, 2 ORDER BY 1, 2""", [*values, run_id, shift])
        return [(key, bucket, (low_step, low_value, low_time),
                 (high_step, high_value, high_time))
                for key, bucket, low_step, low_value, low_time, high_step, high_value,
                high_time in cursor.fetchall()]
