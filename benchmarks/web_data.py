"""Generated data for the web benchmark (benchmarks.bench_web), written with SQL so that millions
of rows take seconds (the big run's metrics through ingestion, as a run writes them); and a run
that logs every second, for the event streams to watch."""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import ingestion, services
from webapp.reviews.models import RunTag
from webapp.runs.models import LogLine, MetricPoint, MetricSummary, Rollout, Run
from webapp.runs_table.models import ColumnSet
from webapp.teams.services import team_create


@dataclass
class World:
    user: object
    big_run: Run  # millions of rows: pages and queries are timed on it
    live_run: Run  # running, logging every second: event streams watch it
    steps: int = 0  # of each metric of big_run
    methods: dict[str, list[Run]] = field(default_factory=dict)  # seed groups, by experiment
    group_steps: int = 0  # of each seed group run's reward/mean
    table_project: object = None  # the runs table's project (part "table")


def create_world() -> World:
    user = get_user_model().objects.create_user("bench", password="bench-web-2026")
    team = team_create(name="Bench", user=user)
    project = project_create(team=team, name="Bench", description="", user=user)
    experiment = experiment_create(project=project, author=user, name="grpo", description="",
                                   config=RunConfig(max_steps=100_000).to_dict())
    big_run = _running(experiment, user, total_steps=100_000)
    live_run = _running(experiment, user, total_steps=10_000)
    return World(user=user, big_run=big_run, live_run=live_run)


def _running(experiment, user, total_steps: int) -> Run:
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="bench")
    services.run_mark_running(run_id=run.pk, device="cpu", total_steps=total_steps)
    return Run.objects.get(pk=run.pk)


def fill_metrics(run: Run, *, keys: int, steps: int) -> None:
    """`keys` metrics (the first is reward/mean) with a value at every step: a noisy rising
    curve with rare spikes, which downsampling must keep. Written as a run's points are, by
    ingestion (batches of 1,000 steps), so the rollups that charts read are kept as they would
    be."""
    rng = random.Random(0)
    names = ["reward/mean"] + [f"bench/metric_{k}" for k in range(1, keys)]
    start = timezone.now() - timedelta(days=2)
    for first in range(1, steps + 1, 1000):
        ingestion.metrics_ingest(run_id=run.pk, points=[
            ingestion.MetricSample(key, step, math.log(step + 1) / 12 + rng.random() * 0.05
                                   + (5 if step % 9973 == 0 else 0),
                                   start + timedelta(seconds=step))
            for step in range(first, min(first + 1000, steps + 1)) for key in names])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Run._meta.db_table} SET progress_step = %s WHERE id = %s",
                       [steps, run.pk])


def fill_seed_groups(world: World, *, seeds: int, steps: int) -> dict[str, list[Run]]:
    """Two methods (learning rates) × `seeds` seeds, running, each run's reward/mean at
    `steps` steps offset by its seed (ragged: no two runs share all their steps), for the
    group chart and statistics parts. {experiment name: runs}."""
    from webapp.runs.services import runs_launch_seeds

    project = world.big_run.experiment.project
    methods = {}
    for name, lr in (("method-a", 1e-6), ("method-b", 3e-6)):
        experiment = experiment_create(
            project=project, author=world.user, name=name, description="",
            config=RunConfig(max_steps=steps, learning_rate=lr).to_dict())
        runs = runs_launch_seeds(experiment=experiment, user=world.user,
                                 seeds=list(range(seeds)))
        with connection.cursor() as cursor:
            for seed, run in enumerate(runs):
                services.run_claim(run_id=run.pk, worker="bench")
                services.run_mark_running(run_id=run.pk, device="cpu", total_steps=steps)
                cursor.execute(f"""
                    INSERT INTO {MetricPoint._meta.db_table} (run_id, key, step, value, wall_time)
                    SELECT %s, 'reward/mean', s + %s,
                           ln(s + 1) / 12 + %s + random() * 0.05,
                           now() - interval '2 days' + s * interval '1 second'
                    FROM generate_series(1, %s) AS s
                """, [run.pk, seed, lr * 1e5, steps])
        methods[name] = runs
    return methods


def fill_rollouts(run: Run, *, rollouts: int, group_size: int) -> None:
    """`rollouts` completions, `group_size` to a group, 8 groups a step; one group in eight
    has equal rewards (degenerate), one completion in ten hit the token limit."""
    groups_per_step = 8
    per_step = groups_per_step * group_size
    columns = {f.column for f in Rollout._meta.concrete_fields}
    degenerate = ", group_degenerate" if "group_degenerate" in columns else ""
    degenerate_value = ", (g %% 8 = 0)" if degenerate else ""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO {Rollout._meta.db_table}
                (run_id, step, "group", sample_index, prompt_id, prompt, completion, reward,
                 rewards, advantage, completion_tokens, truncated, extra{degenerate})
            SELECT %s, i / {per_step} + 1, g, i %% {group_size}, 'p' || (i / {group_size}) %% 5000,
                   'Compute ' || (i / {group_size}) %% 5000 || ' + 17. Give the final answer.',
                   'Let me add them. The answer is ' || (i * 7919) %% 100000 || '.',
                   r, jsonb_build_object('correct', r), r - 0.5, 8 + i %% 24, i %% 10 = 0,
                   '{{}}'::jsonb{degenerate_value}
            FROM (SELECT i, (i / {group_size}) %% {groups_per_step} AS g,
                         CASE WHEN ((i / {group_size}) %% 8) = 0 THEN 1.0
                              ELSE (i %% 3 = 0)::int END AS r
                  FROM generate_series(0, %s::bigint) AS i) AS rows
        """, [run.pk, rollouts - 1])


# The runs table's columns in the benchmark: five metric columns, one of them read from points.
TABLE_COLUMNS = ["metric:last:reward/mean", "metric:max:reward/mean", "metric:min:loss/policy",
                 "metric:last:kl/mean", "metric:mean:10:reward/mean", "config:learning_rate"]


def fill_table(user, *, runs: int, experiments: int = 10, points_per_run: int = 10):
    """A project of `runs` finished runs over `experiments` experiments, as the runs table
    reads them: configs that differ in learning rate and seed, summaries of three metrics (the
    way ingestion keeps them), `points_per_run` points of reward/mean each (for the mean of the
    last k), a tag on one run in ten; and the user's columns (TABLE_COLUMNS). Returns the
    project."""
    team = team_create(name="Table bench", user=user)
    project = project_create(team=team, name="Runs table", description="", user=user)
    config = RunConfig(max_steps=100).to_dict()
    made = [experiment_create(project=project, author=user, name=f"grpo-{e}", description="",
                              config=config) for e in range(experiments)]
    runs_table, points = Run._meta.db_table, MetricPoint._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO {runs_table} (experiment_id, number, config, status, launched_by_id,
                attempts, worker, device, created_at, started_at, finished_at, progress_step,
                progress_total, error_message, notes, name, tracked_tags, client_key, queue,
                priority, seed_group)
            SELECT (%s::int[])[1 + i %% %s], 1 + i / %s,
                   %s::jsonb || jsonb_build_object('learning_rate', (i %% 7 + 1) * 1e-6,
                                                   'seed', i %% 5),
                   'succeeded', %s, 1, 'bench', 'cpu',
                   now() - interval '30 days' + i * interval '10 seconds',
                   now() - interval '30 days' + i * interval '10 seconds',
                   now() - interval '30 days' + i * interval '10 seconds'
                       + (i %% 600) * interval '1 second',
                   100, 100, '', '', '', '{{}}'::jsonb, '', 'cpu', 0, md5((i %% 7)::text)
            FROM generate_series(0, %s - 1) AS i""",
                       [[e.pk for e in made], experiments, experiments, json.dumps(config),
                        user.pk, runs])
        ids = f"SELECT id FROM {runs_table} WHERE experiment_id = ANY(%s)"
        cursor.execute(f"""
            INSERT INTO {points} (run_id, key, step, value, wall_time)
            SELECT r.id, 'reward/mean', s, ln(s + 1) / 3 + (r.id %% 97) / 200.0 + random() * 0.05,
                   now() - interval '1 day' + s * interval '1 second'
            FROM ({ids}) AS r, generate_series(1, %s) AS s""",
                       [[e.pk for e in made], points_per_run])
        cursor.execute(f"""
            INSERT INTO {MetricSummary._meta.db_table}
                (run_id, key, last_step, last_value, min_value, max_value, count)
            SELECT run_id, key, max(step), (array_agg(value ORDER BY step DESC))[1], min(value),
                   max(value), count(*)
            FROM {points} WHERE run_id IN ({ids}) GROUP BY run_id, key
            UNION ALL
            SELECT r.id, k, 100, random(), random() - 1, random() + 1, 100
            FROM ({ids}) AS r, unnest(ARRAY['loss/policy', 'kl/mean']) AS k""",
                       [[e.pk for e in made]] * 2)
        cursor.execute(f"""
            INSERT INTO {RunTag._meta.db_table} (run_id, name, created_at)
            SELECT id, 'seen', now() FROM ({ids}) AS r WHERE id %% 10 = 0""", [[e.pk for e in made]])
    ColumnSet.objects.update_or_create(user=user, project=project,
                                       defaults={"columns": TABLE_COLUMNS})
    return project


def fill_log(run: Run, *, lines: int) -> None:
    now = timezone.now()
    LogLine.objects.bulk_create(
        LogLine(run=run, time=now - timedelta(seconds=lines - i), level="info",
                source="trainer", message=f"step {i}: reward 0.5") for i in range(lines))


def analyze() -> None:
    """Fresh planner statistics, as autovacuum would have after a real run's inserts."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def counts(run: Run) -> str:
    return (f"{MetricPoint.objects.filter(run=run).count():,} metric points, "
            f"{Rollout.objects.filter(run=run).count():,} rollouts, "
            f"{LogLine.objects.filter(run=run).count():,} log lines")


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class RunLogger:
    """What a worker records for a run that logs every second: a step's 30 metric points, a
    log line and the progress, written from a thread of this process."""

    KEYS = [f"bench/live_{i}" for i in range(29)] + ["reward/mean"]

    def __init__(self, run: Run):
        self.run = run
        self.steps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        from django.db import connections

        try:
            while not self._stop.wait(1.0):
                self.steps += 1
                now = timezone.now()
                ingestion.metrics_ingest(run_id=self.run.pk, points=[
                    ingestion.MetricSample(key=key, step=self.steps, value=self.steps * 0.01,
                                          wall_time=now) for key in self.KEYS])
                ingestion.logs_append(run_id=self.run.pk, lines=[
                    (now, "info", "trainer", f"step {self.steps}: reward 0.5")])
                services.run_progress(run_id=self.run.pk, step=self.steps, total_steps=10_000)
        finally:
            connections.close_all()
