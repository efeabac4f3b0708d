"""A project of runs for the runs table's tests: three experiments' runs with metrics, configs,
tags and stars, made through the services that make them in use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.reviews.services import run_star_toggle, run_tag_add
from webapp.runs import ingestion, services
from webapp.runs.models import Run, RunStatus


def log(run: Run, key: str, pairs) -> None:
    now = timezone.now()
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=value, wall_time=now)
        for step, value in pairs])


def finish(run: Run, *, status: str = RunStatus.SUCCEEDED, seconds: int = 60) -> None:
    start = timezone.now() - timedelta(hours=1)
    Run.objects.filter(pk=run.pk).update(status=status, started_at=start,
                                         finished_at=start + timedelta(seconds=seconds))


@pytest.fixture
def lab(project, user, experiment):
    """grpo-small: seeds 1, 2, 3 of lr 1e-5 (reward/mean last 0.2, 0.4, 0.6); grpo-lr: seeds 1,
    2 of lr 3e-5 (0.8, 1.0); one queued run with no metric. Tags: 'good' on the lr runs,
    'baseline' on grpo-small #1; ada starred grpo-lr #1."""
    other = experiment_create(
        project=project, author=user, name="grpo-lr", description="",
        config=RunConfig(max_steps=3, prompts_per_step=2, group_size=2,
                         learning_rate=3e-5).to_dict())
    small = [services.run_launch(experiment=experiment, user=user, overrides={"seed": seed})
             for seed in (1, 2, 3)]
    large = [services.run_launch(experiment=other, user=user, overrides={"seed": seed})
             for seed in (1, 2)]
    for run, last in zip(small + large, (0.2, 0.4, 0.6, 0.8, 1.0)):
        log(run, "reward/mean", [(1, 0.0), (2, last / 2), (3, last)])
        finish(run, seconds=int(last * 100))
    queued = services.run_launch(experiment=experiment, user=user, overrides={"seed": 9})
    run_tag_add(run=small[0], actor=user, name="baseline")
    for run in large:
        run_tag_add(run=run, actor=user, name="good")
    run_star_toggle(run=large[0], user=user)
    return {"small": small, "large": large, "queued": queued, "other": other}
