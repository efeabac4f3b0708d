"""Run by test_metric_summary in a process of its own, on the database its environment names
(SQLite): logs points as a run does, and prints its summaries as JSON, then those the
migration's backfill makes from the same points."""

import importlib
import json
from datetime import timedelta

import django

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.webapp.runs.scenario_world import a_run  # noqa: E402
from webapp.runs import ingestion  # noqa: E402
from webapp.runs.models import MetricSummary  # noqa: E402


def summaries(run) -> dict:
    return {row.key: [row.last_step, row.last_value, row.min_value, row.max_value, row.count]
            for row in MetricSummary.objects.filter(run=run)}


def main() -> None:
    run = a_run()
    now = timezone.now()

    def log(pairs, later=0):
        ingestion.metrics_ingest(run_id=run.pk, points=[
            ingestion.MetricSample(key, step, value, now + timedelta(seconds=later))
            for key, step, value in pairs])

    log([("loss", 1, 3.0), ("loss", 2, 0.5), ("acc", 1, 0.5)])  # new keys
    log([("loss", 3, 9.0), ("acc", 2, 0.75)])  # logging on
    log([("loss", 3, 9.0)])  # a replay
    log([("loss", 2, 2.0)], later=5)  # a step again: 0.5 is gone
    log([("loss", 5, 2.0)])
    kept = summaries(run)
    migration = importlib.import_module(
        "webapp.runs.migrations.0016_table_indexes_metric_summary_backfill")
    with connection.schema_editor() as editor:
        migration.backfill(None, editor)
    print(json.dumps([kept, summaries(run)]))


if __name__ == "__main__":
    main()
