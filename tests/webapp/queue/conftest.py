"""Queued runs made the way launches make them, in whichever order and state a test needs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import services
from webapp.runs.models import Run, RunStatus
from webapp.teams.services import team_create


def queued(experiment, user, *, age: float = 0, **fields) -> Run:
    """A launched run of `experiment`, accepted by the broker, created `age` seconds before
    the others made with a smaller age; `fields` set on it (priority, queue, status...)."""
    run = services.run_launch(experiment=experiment, user=user)
    created = timezone.now() - timedelta(seconds=age)
    Run.objects.filter(pk=run.pk).update(created_at=created, enqueued_at=created, **fields)
    run.refresh_from_db()
    return run


def running(experiment, user, worker: str = "celery@busy") -> Run:
    """A run of `experiment` that `worker` claimed and runs."""
    run = queued(experiment, user)
    assert services.run_claim(run_id=run.pk, worker=worker)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    run.refresh_from_db()
    return run


@pytest.fixture
def other_experiment(experiment, other_user):
    """A training experiment of another team's project, named as a secret would be."""
    theirs = project_create(team=team_create(name="Rivals", user=other_user),
                            name="Secret project", description="", user=other_user)
    return experiment_create(project=theirs, author=other_user, name="secret-plan",
                             description="", config=experiment.config)


@pytest.fixture
def second_experiment(experiment, user):
    """Another project of the same team, with the same config."""
    project = project_create(team=experiment.project.team, name="Second", description="",
                             user=user)
    return experiment_create(project=project, author=user, name="grpo-second",
                             description="", config=experiment.config)


@pytest.fixture
def held_by_check():
    """Registers a claim check that holds back runs whose experiment is named "held", as a
    sweep's concurrency does; unregisters it afterwards."""
    def check(run: Run) -> str | None:
        return "The sweep held runs at most 0 at once." if run.experiment.name == "held" \
            else None

    services.claim_check_register(check)
    yield check
    services._claim_checks.remove(check)
