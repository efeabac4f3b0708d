"""run_claim_next: a worker's token starts the run that goes first now, passing over runs that a
limit holds back; the limit counts only runs that workers run."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings

from tests.webapp.queue.conftest import queued, running
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_limit_set
from webapp.runs import services
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db


def test_a_later_run_of_higher_priority_is_claimed_first(experiment, user):
    older = queued(experiment, user, age=60)
    urgent = queued(experiment, user, priority=5)
    assert services.run_claim_next(queue="cpu", worker="w") == urgent.pk
    assert services.run_claim_next(queue="cpu", worker="w") == older.pk


def test_runs_of_equal_priority_are_claimed_oldest_first(experiment, user):
    first = queued(experiment, user, age=30)
    second = queued(experiment, user, age=20)
    queued(experiment, user, priority=-1, age=40)
    assert services.run_claim_next(queue="cpu", worker="w") == first.pk
    assert services.run_claim_next(queue="cpu", worker="w") == second.pk


def test_a_claim_takes_runs_of_its_own_queue_only(experiment, user):
    gpu = queued(experiment, user, queue="gpu")
    assert services.run_claim_next(queue="cpu", worker="w") is None
    assert services.run_claim_next(queue="gpu", worker="w") == gpu.pk
    claimed = Run.objects.get(pk=gpu.pk)
    assert (claimed.status, claimed.worker, claimed.attempts) == (RunStatus.STARTING, "w", 1)


def test_a_project_at_its_limit_is_passed_over_for_another_projects_run(
        experiment, second_experiment, user):
    project_limit_set(project=experiment.project, user=user, max_concurrent_runs=1)
    running(experiment, user)
    queued(experiment, user, priority=10)
    other = queued(second_experiment, user)
    assert services.run_claim_next(queue="cpu", worker="w") == other.pk
    assert services.run_claim_next(queue="cpu", worker="w") is None


def test_a_limit_counts_starting_and_running_runs_and_frees_a_place_when_one_ends(
        experiment, user):
    project_limit_set(project=experiment.project, user=user, max_concurrent_runs=2)
    first, second, third = (queued(experiment, user, age=age) for age in (30, 20, 10))
    assert services.run_claim_next(queue="cpu", worker="w1") == first.pk  # starting
    assert services.run_claim_next(queue="cpu", worker="w2") == second.pk
    assert services.run_claim_next(queue="cpu", worker="w3") is None
    assert services.run_succeed(run_id=first.pk)
    assert services.run_claim_next(queue="cpu", worker="w3") == third.pk


def test_a_tracked_run_holds_no_place_under_the_limit(experiment, user):
    tracked = experiment_create(project=experiment.project, author=user, name="script",
                                description="", config={}, kind="tracked")
    Run.objects.create(experiment=tracked, number=1, config={}, launched_by=user,
                       status=RunStatus.RUNNING)
    project_limit_set(project=experiment.project, user=user, max_concurrent_runs=1)
    run = queued(experiment, user)
    assert services.run_wait_reason(run) is None
    assert services.run_claim_next(queue="cpu", worker="w") == run.pk


def test_a_registered_check_holds_a_run_back_and_says_why(experiment, user, held_by_check):
    held_experiment = experiment_create(project=experiment.project, author=user, name="held",
                                        description="", config=experiment.config)
    held = queued(held_experiment, user, priority=3)
    free = queued(experiment, user)
    assert services.run_wait_reason(held) == "The sweep held runs at most 0 at once."
    assert services.run_claim_next(queue="cpu", worker="w") == free.pk
    assert services.run_claim_next(queue="cpu", worker="w") is None
    assert Run.objects.get(pk=held.pk).status == RunStatus.QUEUED


def test_many_held_back_runs_do_not_hide_a_run_that_may_start_behind_them(
        experiment, user, held_by_check, monkeypatch):
    monkeypatch.setattr(services, "CLAIM_CANDIDATES", 2)
    held_experiment = experiment_create(project=experiment.project, author=user, name="held",
                                        description="", config=experiment.config)
    for age in range(10, 17):
        queued(held_experiment, user, age=age)
    behind = queued(experiment, user)
    assert services.run_claim_next(queue="cpu", worker="w") == behind.pk


def test_the_wait_reason_names_the_projects_limit(experiment, user):
    project_limit_set(project=experiment.project, user=user, max_concurrent_runs=1)
    running(experiment, user)
    run = queued(experiment, user)
    assert services.run_wait_reason(run) == ("The project's limit of 1 at once is reached "
                                             "(1 starting or running).")


def test_a_wake_sends_one_token_per_queue_with_queued_runs(experiment, user):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("cpu", "gpu")
    queued(experiment, user)
    queued(experiment, user)
    services.queues_wake()
    assert (broker.llen("cpu"), broker.llen("gpu")) == (1, 0)
    services.queues_wake(per_queue=10)
    assert broker.llen("cpu") == 1 + 2, "never more tokens than the queue has runs"


def test_a_run_that_ends_wakes_the_queue(experiment, user, django_capture_on_commit_callbacks):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    first = queued(experiment, user)
    queued(experiment, user)
    services.run_claim(run_id=first.pk, worker="w")
    broker.delete("cpu")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_succeed(run_id=first.pk)
    assert broker.llen("cpu") == 1


def test_raising_a_limit_sends_a_token_for_each_place_it_frees(
        experiment, user, django_capture_on_commit_callbacks):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    project_limit_set(project=experiment.project, user=user, max_concurrent_runs=1)
    running(experiment, user)
    for _ in range(4):
        queued(experiment, user)
    broker.delete("cpu")
    with django_capture_on_commit_callbacks(execute=True):
        project_limit_set(project=experiment.project, user=user, max_concurrent_runs=3)
    assert broker.llen("cpu") == 2
    broker.delete("cpu")
    with django_capture_on_commit_callbacks(execute=True):
        project_limit_set(project=experiment.project, user=user, max_concurrent_runs=None)
    assert broker.llen("cpu") == 4
