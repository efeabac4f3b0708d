"""A worker that shuts down (SIGTERM, as `docker stop` or a restart sends it) marks its run
interrupted at once and stops the training process; the run then resumes from its checkpoint."""

from __future__ import annotations

import signal
import time

import pytest

from tests.conftest import tiny_run_config
from tests.stack import start_worker, training_processes, wait_for_run
from webapp.experiments.services import experiment_create
from webapp.runs import services
from webapp.runs.models import Checkpoint, LogLine, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STEPS = 40


def test_a_worker_stopped_with_sigterm_interrupts_its_run_which_then_resumes(
        tmp_path, project, user, tiny_model):
    # Long enough to be still training when the worker's shutdown reaches it: a tiny-model
    # step can take a third of a second, and the supervisor sees the interruption at its next
    # heartbeat.
    experiment = experiment_create(project=project, author=user, name="stopped", description="",
                                   config=tiny_run_config(tiny_model, max_steps=STEPS,
                                                          checkpoint_every=2))
    worker = start_worker(tmp_path)
    try:
        run = services.run_launch(experiment=experiment, user=user)
        wait_for_run(run, lambda r: Checkpoint.objects.filter(run=r).exists(), 120, worker)
        assert training_processes(run.pk)

        worker.proc.send_signal(signal.SIGTERM)  # the worker's main process only
        stopped_at = time.monotonic()
        run = wait_for_run(run, lambda r: r.is_terminal, 3, worker)
        assert run.status == RunStatus.INTERRUPTED
        assert "shut down" in run.error_message
        while training_processes(run.pk) and time.monotonic() - stopped_at < 15:
            time.sleep(0.1)
        assert training_processes(run.pk) == [], "the training process outlived the shutdown"
        assert worker.proc.wait(timeout=30) == 0
        assert LogLine.objects.filter(run=run, source="worker",
                                      message__startswith="Interrupted").exists()
    finally:
        worker.stop()

    checkpoint = run.checkpoint_to_resume()
    assert checkpoint is not None
    worker = start_worker(tmp_path, name="worker-again")
    try:
        resumed = services.run_resume(run=run, user=user)
        resumed = wait_for_run(resumed, lambda r: r.is_terminal, 180, worker)
        assert resumed.status == RunStatus.SUCCEEDED, resumed.error_message
        assert resumed.resumed_from == checkpoint
        assert (resumed.progress_step, resumed.progress_total) == (STEPS, STEPS)
    finally:
        worker.stop()
