from django.db import migrations, models

# Every (run, key) in one statement: the last value is the point at the highest step (NaN as no
# value), the minimum and maximum leave NaN out, as webapp.runs.ingestion keeps them from here on.
BACKFILL_POSTGRES = """
INSERT INTO runs_metricsummary (run_id, key, last_step, last_value, min_value, max_value, count)
SELECT run_id, key, max(step), (array_agg(NULLIF(value, 'NaN') ORDER BY step DESC))[1],
       min(value) FILTER (WHERE value <> 'NaN'), max(value) FILTER (WHERE value <> 'NaN'),
       count(*)
FROM runs_metricpoint GROUP BY run_id, key
"""
BACKFILL_PORTABLE = """
INSERT INTO runs_metricsummary (run_id, key, last_step, last_value, min_value, max_value, count)
SELECT run_id, key, max(step),
       (SELECT p.value FROM runs_metricpoint p WHERE p.run_id = g.run_id AND p.key = g.key
        ORDER BY p.step DESC LIMIT 1),
       min(value), max(value), count(*)
FROM runs_metricpoint g GROUP BY run_id, key
"""


def backfill(apps, schema_editor):
    """Summaries of the points stored before ingestion kept them."""
    postgres = schema_editor.connection.vendor == "postgresql"
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DELETE FROM runs_metricsummary")
        cursor.execute(BACKFILL_POSTGRES if postgres else BACKFILL_PORTABLE)


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0015_run_sweep'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='metricsummary',
            index=models.Index(fields=['key', 'last_value'], name='metric_summary_key_last'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['created_at', 'id'], name='run_created_order'),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
