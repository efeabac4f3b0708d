"""Devices at a claim: a worker's devices are shared by its tasks, a run that needs more than are
free is passed over until they are, two claims never get the same device, and the queue and
workers pages say who holds what and why a run waits."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from tests.webapp.queue.conftest import queued
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.queue.selectors import run_wait, worker_rows
from webapp.queue.services import worker_report
from webapp.runs import services
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db

CPU2 = ["cpu0", "cpu1"]


def report(name: str, devices: list[str], queues: tuple[str, ...] = ("cpu",), slots: int = 8):
    return worker_report(name=name, host="box", pid=1, queues=list(queues), device="cpu",
                         slots=slots, started_at=timezone.now(), devices=devices)


def experiment_in_new_project(experiment, user, number: int):
    project = project_create(team=experiment.project.team, name=f"Project {number}",
                             description="", user=user)
    return experiment_create(project=project, author=user, name=f"grpo-{number}",
                             description="", config=experiment.config)


def claim(worker: str, devices: list[str]) -> Run | None:
    run_id = services.run_claim_next(queue="cpu", worker=worker, devices=devices)
    return Run.objects.get(pk=run_id) if run_id is not None else None


def test_a_claim_gives_a_run_as_many_free_devices_as_it_needs(experiment, user):
    one = queued(experiment, user, age=20)
    two = queued(experiment, user, age=10, devices=2)
    gpus = ["0", "1", "2", "3"]
    assert claim("w", gpus).device_ids == ["0"]
    assert (claimed := claim("w", gpus)).pk == two.pk and claimed.device_ids == ["1", "2"]
    assert Run.objects.get(pk=one.pk).status == RunStatus.STARTING


def test_a_two_device_run_is_passed_over_on_a_worker_with_one_free_then_claimed_when_free(
        experiment, user):
    first = queued(experiment, user, age=30)
    big = queued(experiment, user, age=20, devices=2)
    small = queued(experiment, user, age=10)
    assert claim("w", CPU2).pk == first.pk
    assert claim("w", CPU2).pk == small.pk, "the big run waits; the one behind it fits"
    assert claim("w", CPU2) is None
    assert services.run_succeed(run_id=first.pk)
    assert claim("w", CPU2) is None, "one device free is not enough"
    assert services.run_fail(run_id=small.pk, error_message="boom")
    claimed = claim("w", CPU2)
    assert (claimed.pk, claimed.device_ids) == (big.pk, CPU2)


def test_devices_are_a_workers_own_another_worker_takes_the_run(experiment, user):
    queued(experiment, user, age=20)
    big = queued(experiment, user, age=10, devices=2)
    assert claim("celery@a", CPU2).device_ids == ["cpu0"]
    assert claim("celery@a", CPU2) is None
    claimed = claim("celery@b", CPU2)
    assert (claimed.pk, claimed.worker, claimed.device_ids) == (big.pk, "celery@b", CPU2)


def test_a_run_needing_more_than_the_worker_has_stays_queued(experiment, user):
    huge = queued(experiment, user, devices=3)
    assert claim("w", CPU2) is None
    assert Run.objects.get(pk=huge.pk).status == RunStatus.QUEUED


def test_a_run_that_asks_for_no_devices_is_still_given_one(experiment, user):
    queued(experiment, user, devices=0)
    assert claim("w", ["2", "5"]).device_ids == ["2"]


def test_a_claim_without_devices_gives_none_as_before(experiment, user):
    run = queued(experiment, user, devices=4)
    assert services.run_claim_next(queue="cpu", worker="w") == run.pk
    assert Run.objects.get(pk=run.pk).device_ids == []


def test_the_run_page_device_says_which_devices(experiment, user):
    run = queued(experiment, user, devices=2)
    assert claim("w", ["1", "3"]).pk == run.pk
    assert services.run_mark_running(run_id=run.pk, device="cuda", total_steps=3)
    assert Run.objects.get(pk=run.pk).device == "cuda:1,3"


@pytest.mark.django_db(transaction=True)
def test_a_claim_waits_for_another_task_of_its_worker_and_takes_another_device(
        experiment, user):
    # Two projects: claims in one project take turns on its row anyway.
    first = queued(experiment_in_new_project(experiment, user, 1), user, age=20)
    second = queued(experiment_in_new_project(experiment, user, 2), user, age=10)
    holding, release = threading.Event(), threading.Event()
    claimed: list[int | None] = []

    def claim_and_hold() -> None:
        """A task of worker w in the middle of its claim: first's device given, not
        committed."""
        try:
            with transaction.atomic():
                services._worker_lock("w")
                assert services.run_claim(run_id=first.pk, worker="w", device_ids=["0"])
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def claim_next() -> None:
        try:
            claimed.append(services.run_claim_next(queue="cpu", worker="w",
                                                   devices=["0", "1"]))
        finally:
            connection.close()

    holder = threading.Thread(target=claim_and_hold)
    holder.start()
    assert holding.wait(timeout=30)
    other = threading.Thread(target=claim_next)
    other.start()
    waiting = wait_for_advisory_lock_waiter(deadline=time.monotonic() + 30)
    release.set()
    holder.join(timeout=30)
    other.join(timeout=30)
    assert waiting, "the second claim never waited for the first"
    assert claimed == [second.pk]
    assert Run.objects.get(pk=first.pk).device_ids == ["0"]
    assert Run.objects.get(pk=second.pk).device_ids == ["1"]


def wait_for_advisory_lock_waiter(deadline: float) -> bool:
    """Whether a connection waits for an advisory lock, asked of Postgres until `deadline`."""
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                           "'Lock' AND wait_event = 'advisory'")
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.05)
    return False


def test_a_held_back_two_device_run_gets_a_token_when_a_run_ends(
        experiment, user, django_capture_on_commit_callbacks):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    first = queued(experiment, user, age=20)
    big = queued(experiment, user, age=10, devices=2)
    assert claim("w", CPU2).pk == first.pk
    assert claim("w", CPU2) is None
    broker.delete("cpu")
    with django_capture_on_commit_callbacks(execute=True):
        services.run_succeed(run_id=first.pk)
    assert broker.llen("cpu") == 1
    assert claim("w", CPU2).pk == big.pk


def test_a_run_needing_more_devices_than_any_worker_has_says_so(experiment, user):
    report("celery@small", CPU2)
    report("celery@gpu", ["0", "1", "2", "3"], queues=("gpu",))
    run = queued(experiment, user, devices=4)
    assert run_wait(run) == ("Needs 4 devices; the workers of queue cpu have at most 2. It "
                             "starts when a worker with more joins the queue.")


def test_a_run_waiting_for_devices_to_free_says_so(experiment, user):
    report("celery@a", CPU2)
    assert claim("celery@a", CPU2) is None
    queued(experiment, user, age=10)
    assert claim("celery@a", CPU2).device_ids == ["cpu0"]
    big = queued(experiment, user, devices=2)
    assert run_wait(big) == ("Needs 2 devices; no worker of queue cpu has that many free now "
                             "(at most 1).")


def test_workers_that_report_no_devices_give_no_device_reason(experiment, user):
    report("celery@old", [])
    assert run_wait(queued(experiment, user, devices=8)) is None


def test_the_workers_page_shows_each_device_and_the_run_that_holds_it(
        experiment, other_experiment, user, other_user, signed_in):
    report("celery@a", ["0", "1", "2"])
    mine = queued(experiment, user, age=20)
    theirs = queued(other_experiment, other_user, age=10)
    assert claim("celery@a", ["0", "1", "2"]).pk == mine.pk
    assert claim("celery@a", ["0", "1", "2"]).pk == theirs.pk
    (row,) = worker_rows(user)
    assert [(u.device, u.run and u.run.pk, u.hidden, u.free) for u in row.devices] == [
        ("0", mine.pk, False, False), ("1", None, True, False), ("2", None, False, True)]
    page = signed_in.get(reverse("queue:workers")).content.decode()
    assert 'data-device="2"' in page and "free" in page and str(mine) in page
    assert "secret-plan" not in page and "a run of another team" in page


def test_the_queue_page_shows_a_runs_device_need(experiment, user, signed_in):
    report("celery@a", CPU2)
    run = queued(experiment, user, devices=2)
    page = signed_in.get(reverse("queue:queue")).content.decode()
    row = page[page.index(f'id="queued-{run.pk}"'):]
    assert '<td class="mono devices-needed">2</td>' in row[:row.index("</tr>")]
