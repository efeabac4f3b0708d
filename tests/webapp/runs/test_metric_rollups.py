"""Metric rollups as metrics_ingest keeps them (webapp.runs.metric_rollups), whatever a batch
holds: small and large batches, replays, a step logged again with another value, steps out of
order, negative steps, NaN and ±inf; the chart series read from them equal to the one worked out
from every point; on Postgres, and on SQLite in a process of its own as embedded mode runs."""

from __future__ import annotations

import doctest
import importlib
import math
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.stack import sqlite_scenario
from tests.webapp.runs.rollup_reference import (
    expected_rollups,
    expected_series,
    kept_rollups,
    stored_points,
)
from webapp.runs import ingestion, metric_rollups, services
from webapp.runs.metric_series import bucket_width, read_series
from webapp.runs.models import MetricRollup

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


def log(run, points, *, later: int = 0) -> None:
    """(key, step, value) points, each at T0 + step seconds (+ `later`)."""
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=value,
                               wall_time=T0 + timedelta(seconds=step + later))
        for key, step, value in points])


@pytest.fixture
def run(experiment, user):
    return services.run_launch(experiment=experiment, user=user)


def test_doctests_pass():
    assert doctest.testmod(metric_rollups).failed == 0


def test_new_points_land_in_one_bucket_per_width(run):
    log(run, [("loss", step, float(step % 13)) for step in range(1, 201)])
    kept = kept_rollups(run)
    assert kept == expected_rollups(run)
    # 200 steps: 26 buckets of 8, 4 of 64, and one of every wider width.
    assert sum(1 for key, shift, _ in kept if shift == 3) == 26
    assert sum(1 for key, shift, _ in kept if shift == 6) == 4
    assert kept["loss", 21, 0] == ((13, 0.0), (194, 12.0))  # ties: lowest, highest step


def test_large_batches_replays_and_steps_logged_again(run):
    """The COPY path (over SMALL_METRIC_BATCH points), a replay of it, and a step logged again
    with a value that removes a bucket's extreme: the buckets are counted again."""
    log(run, [("loss", step, math.sin(step)) for step in range(0, 5000)])
    log(run, [("loss", step, math.sin(step)) for step in range(0, 5000)])  # a replay
    assert kept_rollups(run) == expected_rollups(run)
    low_step, _ = kept_rollups(run)["loss", 21, 0][0]
    log(run, [("loss", low_step, 0.0)], later=5)  # the lowest point is lowest no more
    log(run, [("loss", 7, 100.0), ("loss", 4000, -100.0)], later=5)
    kept = kept_rollups(run)
    assert kept == expected_rollups(run)
    assert kept["loss", 21, 0] == ((4000, -100.0), (7, 100.0))


def test_out_of_order_negative_and_non_finite_steps(run):
    log(run, [("acc", 50, 0.5), ("acc", -9, 2.0), ("acc", -1, math.nan), ("acc", 3, math.inf),
              ("acc", 3, -math.inf), ("acc", 10, -0.0)])
    log(run, [("acc", -70, -3.0), ("acc", 20, math.nan), ("nan/only", 1, math.nan)])
    kept = kept_rollups(run)
    assert kept == expected_rollups(run)
    assert kept["acc", 3, -2] == ((-9, 2.0), (-9, 2.0))  # -9 >> 3 == -2: floor division
    assert not any(key == "nan/only" for key, _, _ in kept)


def test_a_deleted_run_takes_its_rollups(run):
    log(run, [("loss", step, 1.0) for step in range(100)])
    run.delete()
    assert not MetricRollup.objects.exists()


def test_the_migration_backfills_what_ingestion_keeps(run):
    log(run, [("loss", step, math.cos(step)) for step in range(-300, 3000, 3)])
    log(run, [("loss", 9, 50.0), ("acc", 5, math.nan), ("acc", 6, 1.0)], later=1)
    kept = kept_rollups(run)
    migration = importlib.import_module("webapp.runs.migrations.0018_metric_rollup")
    MetricRollup.objects.all().delete()
    with connection.schema_editor() as editor:
        migration.backfill(None, editor)
    assert kept_rollups(run) == kept == expected_rollups(run)


steps = st.integers(min_value=-5_000, max_value=60_000)
values = st.one_of(st.floats(min_value=-1e6, max_value=1e6),
                   st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0]))
batch = st.lists(st.tuples(st.sampled_from(["a", "b"]), steps, values), min_size=1,
                 max_size=60)
runs_of_steps = st.tuples(st.sampled_from(["a", "b"]), st.integers(-3_000, 40_000),
                          st.integers(1, 30_000), st.integers(1, 97))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=st.lists(st.one_of(batch, runs_of_steps), min_size=1, max_size=5),
       bounds=st.tuples(st.none() | steps, st.none() | steps))
def test_rollups_and_chart_series_equal_the_reference(experiment, user, batches, bounds):
    """Any batches (scattered points, or long runs of steps: `(key, first, count, stride)`, with
    values that repeat), then the chart of any range: equal to the one worked out from every
    point, whichever of rollups and points it was read from."""
    run = services.run_launch(experiment=experiment, user=user)
    for index, points in enumerate(batches):
        if isinstance(points, tuple):
            key, first, count, stride = points
            points = [(key, step, float((step * stride) % 11)) for step in
                      range(first, first + count)]
        log(run, points, later=index)
    assert kept_rollups(run) == expected_rollups(run)
    start, end = bounds
    read = read_series(run, ["a", "b"], start=start, end=end)
    stored = stored_points(run)
    lo = -2**63 if start is None else start
    hi = 2**63 - 1 if end is None else end
    in_range = [step for key in read.series for step in stored[key] if lo <= step <= hi]
    assert read.width == (bucket_width(min(in_range), max(in_range)) if in_range else 1)
    for key in ("a", "b"):
        expected = (expected_series(stored[key], read.width, lo, hi)
                    if any(lo <= step <= hi for step in stored.get(key, {})) else None)
        got = read.series.get(key)
        assert (list(zip(got[0], got[1])) if got else None) == expected


def test_sqlite_keeps_the_same_rollups(tmp_path):
    """Embedded mode's path (webapp.runs.ingestion._metrics_upsert_portable), in a process of
    its own on a fresh SQLite database: rollups equal to the reference after each kind of
    batch, charts read from them equal to the reference, and the migration's backfill."""
    checks = sqlite_scenario(tmp_path, "tests.webapp.runs.rollup_scenario")
    assert checks == {"after each batch": True, "charts": True, "backfill": True,
                      "buckets": checks["buckets"]}
    assert checks["buckets"] > 100
