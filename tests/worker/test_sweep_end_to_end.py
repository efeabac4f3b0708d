"""A sweep of tiny-model runs end to end through a real Celery worker: the grid's runs wait for
the sweep's concurrency limit, the first finishes and completes its trial, and the median pruner
stops the second, clearly worse, through the run's normal cancel."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from tests.conftest import tiny_run_config
from tests.stack import start_worker, training_processes, wait_for_run
from webapp.experiments.services import experiment_create
from webapp.runs.models import RunStatus
from webapp.sweeps.definition import definition_parse
from webapp.sweeps.models import SweepStatus
from webapp.sweeps.services import sweep_create
from webapp.sweeps.study import study_of

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(tmp_path, tiny_model):
    process = start_worker(tmp_path)
    yield process
    process.stop()


def test_the_median_pruner_stops_the_worse_run_of_a_sweep(worker, project, user, tiny_model):
    # The tiny model's random weights almost never sample the end of text, so a run's mean
    # completion length is its max_new_tokens: the trial with 2 tokens is clearly worse.
    experiment_create(project=project, author=user, name="tiny", description="",
                      config=tiny_run_config(tiny_model, max_steps=4))
    definition = definition_parse({
        "experiment": "tiny", "name": "length", "method": "grid", "budget": 2,
        "max_concurrent": 1,
        "objective": {"metric": "completion/length_mean", "direction": "maximize"},
        "pruner": {"median": {"startup_trials": 1, "warmup_steps": 1}},
        "axes": {"max_new_tokens": {"values": [8, 2]}}}, project=project)
    sweep = sweep_create(definition=definition, user=user)
    long, short = sweep.runs.order_by("sweep_trial")

    short = wait_for_run(short, lambda r: r.status != RunStatus.QUEUED, 180, worker)
    long.refresh_from_db()
    assert long.status == RunStatus.SUCCEEDED, "the sweep runs one at a time"
    short = wait_for_run(short, lambda r: r.is_terminal, 120, worker)

    assert short.status == RunStatus.CANCELLED, short.error_message
    assert short.error_message.startswith("Pruned by the sweep's median pruner at step ")
    assert "below the median 8" in short.error_message
    assert short.progress_step < 4
    states = [trial.state for trial in study_of(sweep).get_trials(deepcopy=False)]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study_of(sweep).trials[0].value == pytest.approx(8)
    sweep.refresh_from_db()
    assert sweep.status == SweepStatus.FINISHED and not sweep.notice
    wait_for_run(short, lambda r: training_processes(r.pk) == [], 30, worker)
