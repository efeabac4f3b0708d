"""Runs with chosen configs and metric points, for the grouping, chart and statistics tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.projects.activity import Verb
from webapp.reviews.models import RunTag
from webapp.runs import ingestion
from webapp.runs.services import run_create

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def make_run(experiment, user):
    """make_run({"lr": 1e-6, "seed": 1}, points={"reward/mean": {0: 1.0}}, tags=["a"]) -> Run,
    with exactly that config (a tracked run's parameters can be any), its points and tags."""

    def make(config: dict, *, points: dict | None = None, tags: tuple = (), exp=None):
        run = run_create(experiment=exp or experiment, config=config, user=user,
                         verb=Verb.LAUNCHED)
        for key, values in (points or {}).items():
            log(run, key, values)
        for tag in tags:
            RunTag.objects.create(run=run, name=tag)
        return run

    return make


def log(run, key: str, values: dict[int, float]) -> None:
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=value,
                               wall_time=T0 + timedelta(seconds=step))
        for step, value in values.items()])
