"""The rollout browser: a group's degeneracy on each rollout, the indexes of the browser's orders
and of the prompt history, and trigram indexes for its text search (Postgres only)."""

from django.db import migrations, models

import webapp.runs.models


class RunSQLOnPostgres(migrations.RunSQL):
    """RunSQL that does nothing on other databases: SQLite, the embedded mode's database, has no
    trigram indexes and searches by scanning, which is fine at its scale."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


# Django's icontains on Postgres is UPPER(column::text) LIKE UPPER(pattern): these expression
# indexes answer it (the cast of a text column to text is dropped by the planner).
# Going back leaves the extension installed: something else in the database may use it.
TRIGRAM_INDEXES = [
    RunSQLOnPostgres("CREATE EXTENSION IF NOT EXISTS pg_trgm", migrations.RunSQL.noop),
    *(RunSQLOnPostgres(
        f"CREATE INDEX rollout_{column}_trgm ON runs_rollout USING gin "
        f"(UPPER({column}) gin_trgm_ops)",
        f"DROP INDEX rollout_{column}_trgm")
      for column in ("prompt", "completion")),
]


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0005_run_resumed_from'),
    ]

    operations = [
        migrations.AddField(
            model_name='rollout',
            name='group_degenerate',
            field=models.BooleanField(help_text='Every reward of its group at this step was equal, so the group gave GRPO no learning signal; None when not known.', null=True),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate'), name='rollout_newest_group'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), webapp.runs.models.Negated('reward'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate'), name='rollout_reward_desc'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), models.F('reward'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'truncated', 'group_degenerate'), name='rollout_reward_asc'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), webapp.runs.models.Negated('advantage'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate', 'advantage'), name='rollout_advantage_desc'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), models.F('advantage'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate'), name='rollout_advantage_asc'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), webapp.runs.models.Negated('completion_tokens'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate', 'completion_tokens'), name='rollout_length_desc'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), models.F('completion_tokens'), webapp.runs.models.Negated('step'), models.F('group'), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate'), name='rollout_length_asc'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), webapp.runs.models.Negated('step'), models.F('group'), condition=models.Q(('truncated', True)), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate'), name='rollout_truncated'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(models.F('run'), webapp.runs.models.Negated('step'), models.F('group'), condition=models.Q(('group_degenerate', True)), include=('step', 'sample_index', 'reward', 'truncated', 'group_degenerate'), name='rollout_degenerate'),
        ),
        migrations.AddIndex(
            model_name='rollout',
            index=models.Index(fields=['run', 'prompt_id', 'step'], name='rollout_prompt_history'),
        ),
        *TRIGRAM_INDEXES,
    ]
