"""What the metric rollups and the chart series must be, worked out in Python from the stored
points: the references test_metric_rollups compares the database's answers with (the SQLite
scenario uses them too)."""

from __future__ import annotations

import math

from webapp.runs.metric_rollups import SHIFTS
from webapp.runs.models import MetricPoint, MetricRollup

Extremes = tuple[tuple[int, float], tuple[int, float]]  # (step, value) lowest and highest


def stored_points(run) -> dict[str, dict[int, float]]:
    points: dict[str, dict[int, float]] = {}
    for key, step, value in MetricPoint.objects.filter(run=run).values_list(
            "key", "step", "value"):
        points.setdefault(key, {})[step] = value
    return points


def expected_rollups(run) -> dict[tuple[str, int, int], Extremes]:
    """{(key, shift, bucket): ((low step, low value), (high step, high value))}: the lowest and
    the highest finite point of each bucket by (value, step)."""
    expected: dict[tuple[str, int, int], Extremes] = {}
    for key, points in stored_points(run).items():
        for step, value in points.items():
            if not math.isfinite(value):
                continue
            for shift in SHIFTS:
                found = expected.get((key, shift, step >> shift))
                low, high = found if found else ((step, value), (step, value))
                expected[key, shift, step >> shift] = (
                    min(low, (step, value), key=lambda p: (p[1], p[0])),
                    max(high, (step, value), key=lambda p: (p[1], p[0])))
    return expected


def kept_rollups(run) -> dict[tuple[str, int, int], Extremes]:
    return {(key, shift, bucket): ((low_step, low_value), (high_step, high_value))
            for key, shift, bucket, low_step, low_value, high_step, high_value in
            MetricRollup.objects.filter(run=run).values_list(
                "key", "shift", "bucket", "low_step", "low_value", "high_step", "high_value")}


def expected_series(points: dict[int, float], width: int, lo: int, hi: int,
                    ) -> list[tuple[int, float | None]]:
    """A metric's chart points (step, value) over lo..hi in buckets of `width` steps: each
    bucket's lowest and highest finite point in step order, then the last point."""
    in_range = {step: value for step, value in points.items() if lo <= step <= hi}
    if width == 1:
        return [(step, value if math.isfinite(value) else None)
                for step, value in sorted(in_range.items())]
    buckets: dict[int, list[tuple[int, float]]] = {}
    for step, value in in_range.items():
        if math.isfinite(value):
            buckets.setdefault(step // width, []).append((step, value))
    chart: list[tuple[int, float | None]] = []
    for bucket in sorted(buckets):
        low = min(buckets[bucket], key=lambda p: (p[1], p[0]))
        high = max(buckets[bucket], key=lambda p: (p[1], p[0]))
        chart += sorted({low, high})
    last = max(in_range)
    if not chart or chart[-1][0] < last:
        chart.append((last, in_range[last] if math.isfinite(in_range[last]) else None))
    return chart
