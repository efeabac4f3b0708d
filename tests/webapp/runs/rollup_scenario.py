"""Run by test_metric_rollups in a process of its own, on the database its environment names
(SQLite): logs points as a run does, and prints as JSON whether the rollups equal the reference
after each batch, whether charts read from them do, and whether the migration's backfill makes
the same rollups."""

import importlib
import json
import math
from datetime import timedelta

import django

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.webapp.runs.rollup_reference import (  # noqa: E402
    expected_rollups,
    expected_series,
    kept_rollups,
    stored_points,
)
from tests.webapp.runs.scenario_world import a_run  # noqa: E402
from webapp.runs import ingestion  # noqa: E402
from webapp.runs.metric_series import read_series  # noqa: E402
from webapp.runs.models import MetricRollup  # noqa: E402


def main() -> None:
    run = a_run()
    now = timezone.now()

    def log(points, later=0):
        ingestion.metrics_ingest(run_id=run.pk, points=[
            ingestion.MetricSample(key, step, value, now + timedelta(seconds=step + later))
            for key, step, value in points])

    batches = [
        [("loss", step, math.sin(step)) for step in range(0, 3000)],  # new keys
        [("loss", step, math.sin(step)) for step in range(3000, 9000)],  # logging on
        [("loss", step, math.sin(step)) for step in range(0, 100)],  # a replay
        [("loss", 11, 5.0), ("loss", 4000, -5.0), ("acc", -20, 0.5)],  # steps again, negative
        # SQLite keeps no NaN (it reads as NULL): -inf stands for what charts cannot draw.
        [("acc", step, -math.inf if step % 7 == 0 else step % 5) for step in range(-10, 900)],
        [("acc", 50, math.inf), ("acc", 3, 0.25)],
    ]
    after_each = True
    for index, batch in enumerate(batches):
        log(batch, later=index)
        after_each &= kept_rollups(run) == expected_rollups(run)
    stored = stored_points(run)
    charts = True
    for start, end in ((None, None), (100, 8000), (-15, 777), (2049, 2050)):
        read = read_series(run, ["loss", "acc"], start=start, end=end)
        lo = -2**63 if start is None else start
        hi = 2**63 - 1 if end is None else end
        for key, columns in read.series.items():
            chart = list(zip(columns[0], columns[1]))
            expected = expected_series(stored[key], read.width, lo, hi)
            # Points of equal value may stand for each other (SQLite's min() and max() pick
            # one by chance): each point is a stored one, and the values agree bucket by bucket.
            charts &= all(value is None or stored[key][step] == value for step, value in chart)
            charts &= _values_by_bucket(chart, read.width) == _values_by_bucket(
                expected, read.width)
    kept = kept_rollups(run)
    migration = importlib.import_module("webapp.runs.migrations.0018_metric_rollup")
    MetricRollup.objects.all().delete()
    with connection.schema_editor() as editor:
        migration.backfill(None, editor)
    print(json.dumps({"after each batch": after_each, "charts": charts,
                      "backfill": kept_rollups(run) == kept, "buckets": len(kept)}))


def _values_by_bucket(chart, width):
    buckets = {}
    for step, value in chart:
        buckets.setdefault(step // width, []).append(value)
    return {bucket: sorted(values, key=repr) for bucket, values in buckets.items()}


if __name__ == "__main__":
    main()
