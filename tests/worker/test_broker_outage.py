"""A launch while the broker is down answers at once; the run waits, saying so, and trains once
the broker is back. The broker here is a Redis of the test's own, on a port where nothing listens
until the test starts it: the shared Redis is never stopped."""

from __future__ import annotations

import time

import pytest

from tests.conftest import tiny_run_config
from tests.stack import WebSession, free_port, start_redis, start_web, start_worker
from webapp.experiments.services import experiment_create
from webapp.runs.models import Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_launch_while_the_broker_is_down_waits_for_it_and_trains_once_it_is_back(
        tmp_path, project, user, tiny_model):
    port = free_port()
    broker_url = f"redis://127.0.0.1:{port}/0"
    experiment = experiment_create(project=project, author=user, name="outage", description="",
                                   config=tiny_run_config(tiny_model, max_steps=2))
    web, base_url = start_web(tmp_path, CELERY_BROKER_URL=broker_url)
    processes = [web]
    try:
        session = WebSession(base_url, user)
        started = time.monotonic()
        status, page, address = session.post(f"/experiments/{experiment.pk}/launch/")
        launch_seconds = time.monotonic() - started

        assert status == 200, page[-2000:]
        assert launch_seconds < 10, f"the launch took {launch_seconds:.1f} s"
        run = Run.objects.get(experiment=experiment)
        assert address.endswith(run.get_absolute_url())
        assert (run.status, run.enqueued_at) == (RunStatus.QUEUED, None)
        assert "waiting for the broker" in page
        assert "waiting for the broker" in session.get(run.get_absolute_url())[1]

        processes.append(start_redis(tmp_path, port))
        worker = start_worker(tmp_path, CELERY_BROKER_URL=broker_url,
                              RLAB_HOUSEKEEPING_SECONDS="1")
        processes.append(worker)
        deadline = time.monotonic() + 120
        while not run.is_terminal:
            assert time.monotonic() < deadline, worker.output()[-4000:]
            time.sleep(0.25)
            run.refresh_from_db()

        assert run.status == RunStatus.SUCCEEDED, run.error_message
        assert run.enqueued_at is not None and run.attempts == 1
        assert f"queued runs sent to the broker again: {run.pk}\n" in worker.output()
        assert "waiting for the broker" not in session.get(run.get_absolute_url())[1]
    finally:
        for process in reversed(processes):
            process.stop()
