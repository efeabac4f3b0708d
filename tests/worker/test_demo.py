"""`make demo` again after Ctrl-C shows the run that will train: the interrupted demo run
continued from its checkpoint, or a new run."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from webapp.experiments.models import Experiment
from webapp.runs import ingestion, services
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:8000"


def _demo() -> str:
    out = StringIO()
    call_command("demo", url=URL, stdout=out)
    return out.getvalue()


def _first_demo_run(tmp_path, *, checkpoint: bool) -> Run:
    """The demo's first run, claimed by a worker, with a checkpoint at step 5 if asked."""
    _demo()
    run = Experiment.objects.get(name="SmolLM2 arithmetic GRPO").runs.get()
    assert services.run_claim(run_id=run.pk, worker="celery@laptop")
    if checkpoint:
        folder = tmp_path / "checkpoint-5"
        folder.mkdir()
        ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
            ingestion.CheckpointSaved(step=5, path=str(folder))])
    return run


def test_demo_again_resumes_the_interrupted_run_from_its_checkpoint(tmp_path):
    run = _first_demo_run(tmp_path, checkpoint=True)
    assert run.config["checkpoint_every"] > 0, "the demo saves checkpoints to resume from"
    services.runs_interrupt(worker="celery@laptop", reason="Ctrl-C")

    output = _demo()

    resumed = run.experiment.runs.first()
    assert resumed != run and resumed.status == RunStatus.QUEUED
    assert (resumed.resumed_from.run, resumed.resumed_from.step) == (run, 5)
    assert f"open {URL}{resumed.get_absolute_url()}\n" in output


def test_demo_again_launches_a_new_run_when_the_interrupted_one_saved_no_checkpoint(tmp_path):
    run = _first_demo_run(tmp_path, checkpoint=False)
    services.runs_interrupt(worker="celery@laptop", reason="Ctrl-C")

    output = _demo()

    new = run.experiment.runs.first()
    assert new != run and new.resumed_from is None and new.status == RunStatus.QUEUED
    assert f"open {URL}{new.get_absolute_url()}\n" in output


def test_demo_again_takes_a_run_left_running_by_a_killed_rlab_as_interrupted(tmp_path):
    run = _first_demo_run(tmp_path, checkpoint=True)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING,
                                         heartbeat_at=timezone.now() - timedelta(minutes=1))

    output = _demo()

    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    resumed = run.experiment.runs.first()
    assert resumed.resumed_from.run == run
    assert f"open {URL}{resumed.get_absolute_url()}\n" in output


def test_demo_again_shows_the_run_that_is_still_training(tmp_path):
    run = _first_demo_run(tmp_path, checkpoint=True)
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())

    output = _demo()

    assert run.experiment.runs.count() == 1
    assert f"open {URL}{run.get_absolute_url()}\n" in output


def test_the_demos_mid_training_experiment_launches_on_the_shipped_corpus():
    _demo()
    experiment = Experiment.objects.get(name="SmolLM2 mid-training (RMT)")
    assert not experiment.runs.exists()  # launched from the browser, not by the demo
    run = services.run_launch(experiment=experiment, user=experiment.author)
    assert run.status == RunStatus.QUEUED
    assert (run.config["algorithm"], run.config["task"]) == ("rmt", "text_corpus")
