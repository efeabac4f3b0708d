"""MetricSummary as metrics_ingest keeps it: each run's metric in a few numbers (last, min, max,
count) that the runs table sorts and filters by, right after every batch whatever the batch
holds: replays, a step logged again, steps out of order, NaN, large batches; on Postgres and on
SQLite (in a process of its own, as embedded mode runs)."""

from __future__ import annotations

import importlib
import math
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.stack import sqlite_scenario
from webapp.runs import ingestion, services
from webapp.runs.models import MetricSummary

pytestmark = pytest.mark.django_db

T0 = timezone.now()


def points(key: str, pairs, *, later: int = 0):
    return [ingestion.MetricSample(key=key, step=step, value=value,
                                   wall_time=T0 + timedelta(seconds=later))
            for step, value in pairs]


def summary(run, key: str = "loss") -> tuple:
    row = MetricSummary.objects.get(run=run, key=key)
    return row.last_step, row.last_value, row.min_value, row.max_value, row.count


@pytest.fixture
def run(experiment, user):
    return services.run_launch(experiment=experiment, user=user)


def test_batches_that_log_on_add_up_to_last_min_max_and_count(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(1, 3.0), (2, 1.0)]))
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(3, 2.0), (4, 5.0)]))
    assert summary(run) == (4, 5.0, 1.0, 5.0, 4)


def test_a_replayed_batch_changes_nothing(run):
    batch = points("loss", [(1, 3.0), (2, 1.0)])
    ingestion.metrics_ingest(run_id=run.pk, points=batch)
    ingestion.metrics_ingest(run_id=run.pk, points=batch)
    assert summary(run) == (2, 1.0, 1.0, 3.0, 2)


def test_a_step_logged_again_replaces_the_last_value_and_drops_the_old_extreme(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(1, 3.0), (2, 0.5)]))
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(2, 2.0)], later=5))
    assert summary(run) == (2, 2.0, 2.0, 3.0, 2)


def test_steps_out_of_order_keep_the_highest_step_as_last(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(5, 1.5)]))
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(2, 9.0), (3, -1.0)]))
    assert summary(run) == (5, 1.5, -1.0, 9.0, 3)


def test_nan_is_no_extreme_and_a_nan_last_value_is_no_value(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(1, 2.0), (2, math.nan)]))
    assert summary(run) == (2, None, 2.0, 2.0, 2)
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(3, 4.0)]))
    assert summary(run) == (3, 4.0, 2.0, 4.0, 3)


def test_infinities_are_values(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(1, -math.inf), (2, 1.0)]))
    assert summary(run) == (2, 1.0, -math.inf, 1.0, 2)


def test_each_key_of_a_batch_has_its_own_summary(run):
    ingestion.metrics_ingest(run_id=run.pk, points=[*points("a", [(1, 1.0)]),
                                                    *points("b", [(1, 7.0), (2, 8.0)])])
    assert summary(run, "a") == (1, 1.0, 1.0, 1.0, 1)
    assert summary(run, "b") == (2, 8.0, 7.0, 8.0, 2)


def test_a_large_batch_with_a_step_twice_and_a_replaced_step_is_summarised(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(0, -50.0)]))
    big = points("loss", [(step, float(step)) for step in range(3000)], later=1)
    big.append(ingestion.MetricSample("loss", 2999, 10_000.0, T0 + timedelta(seconds=2)))
    ingestion.metrics_ingest(run_id=run.pk, points=big)
    assert summary(run) == (2999, 10_000.0, 0.0, 10_000.0, 3000)


def test_a_large_batch_of_new_points_is_summarised(run):
    ingestion.metrics_ingest(run_id=run.pk,
                             points=points("loss", [(step, -step) for step in range(2500)]))
    assert summary(run) == (2499, -2499.0, -2499.0, 0.0, 2500)


def test_summaries_go_with_their_run(run):
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(1, 1.0)]))
    run.delete()
    assert not MetricSummary.objects.exists()


def test_the_migration_backfills_what_ingestion_keeps(run, experiment, user):
    other = services.run_launch(experiment=experiment, user=user)
    ingestion.metrics_ingest(run_id=run.pk, points=points("loss", [(1, 3.0), (4, math.nan),
                                                                    (2, -1.0)]))
    ingestion.metrics_ingest(run_id=other.pk, points=points("acc", [(7, 0.5), (3, 0.9)]))
    kept = sorted(MetricSummary.objects.values_list(
        "run_id", "key", "last_step", "last_value", "min_value", "max_value", "count"))
    migration = importlib.import_module(
        "webapp.runs.migrations.0016_table_indexes_metric_summary_backfill")
    with connection.schema_editor() as editor:
        migration.backfill(None, editor)
    assert sorted(MetricSummary.objects.values_list(
        "run_id", "key", "last_step", "last_value", "min_value", "max_value", "count")) == kept


def test_sqlite_keeps_the_same_summaries(tmp_path):
    """Embedded mode's path (webapp.runs.ingestion._metrics_upsert_portable), in a process of
    its own on a fresh SQLite database: the scenario's summaries, and the backfill's."""
    kept, backfilled = sqlite_scenario(tmp_path, "tests.webapp.runs.summary_scenario")
    assert kept == {"loss": [5, 2.0, 2.0, 9.0, 4], "acc": [2, 0.75, 0.5, 0.75, 2]}
    assert backfilled == kept
