"""Deleting a run that a real worker is training: refused until the run is cancelled and its
worker has stopped the training process, so that no process writes into a deleted run."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError

from tests.conftest import tiny_run_config
from tests.stack import start_worker, training_processes
from webapp.deletion.services import run_delete
from webapp.experiments.services import experiment_create
from webapp.runs import services
from webapp.runs.files import run_folder
from webapp.runs.models import Checkpoint, LogLine, Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _wait(predicate, timeout: float, worker, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.output()[-4000:]}")


def test_a_training_run_is_deleted_once_its_process_has_stopped_and_stays_deleted(
        tmp_path, settings, tiny_model, project, user):
    settings.RLAB_RUN_DIR = tmp_path / "runs"  # the web app sees the worker's folders
    worker = start_worker(tmp_path, RLAB_RUN_DIR=str(settings.RLAB_RUN_DIR))
    try:
        experiment = experiment_create(
            project=project, author=user, name="long", description="",
            config=tiny_run_config(tiny_model, max_steps=500, checkpoint_every=1,
                                   keep_checkpoints=2))
        run = services.run_launch(experiment=experiment, user=user)
        _wait(lambda: Checkpoint.objects.filter(run=run).exists(), 180, worker,
              "the run's first checkpoint")
        folder = run_folder(run.pk, run.created_at)
        assert folder.is_dir() and training_processes(run.pk)

        with pytest.raises(ValidationError, match="cancel it first"):
            run_delete(run=run, user=user)
        services.run_cancel(run=run, user=user)
        # Cancelled, but its worker notices only at its next heartbeat.
        with pytest.raises(ValidationError, match="may still be stopping the training process"):
            run_delete(run=run, user=user)
        _wait(lambda: LogLine.objects.filter(run=run, source="worker").exists(), 60, worker,
              "the worker to stop the training process")
        assert training_processes(run.pk) == []

        run_delete(run=run, user=user)
        assert not Run.objects.filter(pk=run.pk).exists()
        assert not folder.exists()
        time.sleep(3)  # a few heartbeats: nothing writes into the deleted run any more
        assert not folder.exists()
        assert "IntegrityError" not in worker.output()

        # The worker goes on to the next run.
        after = services.run_launch(experiment=experiment, user=user)
        _wait(lambda: Run.objects.get(pk=after.pk).status == RunStatus.RUNNING, 180, worker,
              "the next run to start")
        services.run_cancel(run=after, user=user)
        _wait(lambda: not training_processes(after.pk), 60, worker, "the next run to stop")
    finally:
        worker.stop()
