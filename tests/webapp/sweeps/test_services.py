"""Sweeps launch their runs all or nothing, tell their Optuna study each trial's outcome, ask TPE
for more as trials end, stop poor runs through the median pruner, and cancel with their runs."""

from __future__ import annotations

from datetime import timedelta

import optuna
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from webapp.runs.ingestion import metrics_ingest
from webapp.runs.models import Run, RunStatus
from webapp.runs.services import run_claim, run_fail, run_mark_running, run_succeed
from webapp.sweeps.definition import definition_parse
from webapp.sweeps.models import Sweep, SweepStatus
from webapp.sweeps.selectors import best_trials, sweep_progress, sweep_trials
from webapp.sweeps.services import (
    sweep_cancel,
    sweep_create,
    sweep_metrics_stored,
    sweep_wait_reason,
)
from webapp.sweeps.study import study_of, study_storage

pytestmark = pytest.mark.django_db


@pytest.fixture
def create(definition, project, user):
    def make(**changes) -> Sweep:
        return sweep_create(definition=definition_parse(definition(**changes), project=project),
                            user=user)
    return make


@pytest.fixture
def run_through(django_capture_on_commit_callbacks):
    """run_through(run, [values], end="succeeded"|"failed"|None) claims the run, logs
    reward/mean at steps 1.., and ends it, with what commits sets off (the sweep's handlers)."""
    def go(run: Run, values, end: str | None = "succeeded", key: str = "reward/mean") -> Run:
        with django_capture_on_commit_callbacks(execute=True):
            if run.status == RunStatus.QUEUED:
                run_claim(run_id=run.pk, worker="test-worker")
                run_mark_running(run_id=run.pk, device="cpu", total_steps=len(values))
            now = timezone.now()
            for step, value in enumerate(values, start=1):
                metrics_ingest(run_id=run.pk, points=[(key, step, value, now)])
            if end == "succeeded":
                run_succeed(run_id=run.pk)
            elif end == "failed":
                run_fail(run_id=run.pk, error_message="boom")
        run.refresh_from_db()
        return run
    return go


def trial_states(sweep: Sweep) -> list[str]:
    return [trial.state.name for trial in sweep_trials(sweep)]


def test_a_grid_launches_every_combination_with_its_trial_and_settings(create):
    sweep = create()
    runs = list(sweep.runs.order_by("sweep_trial"))
    assert [(run.config["learning_rate"], run.config["beta"], run.sweep_trial) for run in runs] \
        == [(1e-6, 0.0, 0), (1e-6, 0.04, 1), (1e-5, 0.0, 2), (1e-5, 0.04, 3)]
    assert all(run.status == RunStatus.QUEUED for run in runs)
    assert [trial.params for trial in sweep_trials(sweep)] == [
        {"learning_rate": 1e-6, "beta": 0.0}, {"learning_rate": 1e-6, "beta": 0.04},
        {"learning_rate": 1e-5, "beta": 0.0}, {"learning_rate": 1e-5, "beta": 0.04}]
    assert sweep.status == SweepStatus.RUNNING


def test_seeds_run_each_trial_once_per_seed(create):
    sweep = create(seeds=[7, 8], budget=8)
    seeds = sorted((run.sweep_trial, run.config["seed"]) for run in sweep.runs.all())
    assert seeds == [(t, s) for t in range(4) for s in (7, 8)]


def test_a_random_search_launches_its_whole_budget_within_the_ranges(create):
    sweep = create(method="random", budget=6,
                   axes={"learning_rate": {"log_uniform": [1e-7, 1e-5]},
                         "max_steps": {"uniform": [2, 5]}})
    runs = list(sweep.runs.all())
    assert len(runs) == 6
    assert all(1e-7 <= run.config["learning_rate"] <= 1e-5 for run in runs)
    assert all(isinstance(run.config["max_steps"], int) and 2 <= run.config["max_steps"] <= 5
               for run in runs)


def test_a_trial_that_cannot_launch_creates_nothing_and_deletes_the_study(create):
    studies_before = study_names()
    with pytest.raises(ValidationError) as caught:
        create(axes={"model": {"values": ["builtin:smollm2-135m-instruct", "local:absent"]}},
               budget=2)
    assert "Trial 1 (model='local:absent') cannot run" in caught.value.messages[0]
    assert not Sweep.objects.exists() and not Run.objects.exists()
    assert study_names() == studies_before


def study_names() -> set[str]:
    return {summary.study_name
            for summary in optuna.get_all_study_summaries(storage=study_storage())}


def test_a_tpe_sweep_asks_its_first_batch_then_one_more_as_each_trial_ends(create, run_through):
    sweep = create(method="tpe", budget=4, max_concurrent=2,
                   axes={"learning_rate": {"log_uniform": [1e-7, 1e-5]}})
    first = list(sweep.runs.order_by("sweep_trial"))
    assert [run.sweep_trial for run in first] == [0, 1]

    run_through(first[0], [0.2, 0.5])
    assert sorted(sweep.runs.values_list("sweep_trial", flat=True)) == [0, 1, 2]
    assert trial_states(sweep)[:2] == ["COMPLETE", "RUNNING"]
    assert study_of(sweep).trials[0].value == 0.5, "a trial's objective is its last value"

    run_through(first[1], [0.1], end="failed")
    assert sorted(sweep.runs.values_list("sweep_trial", flat=True)) == [0, 1, 2, 3]
    assert trial_states(sweep)[1] == "FAIL"

    for run in sweep.runs.filter(sweep_trial__in=[2, 3]):
        run_through(run, [0.3])
    sweep.refresh_from_db()
    assert sweep.runs.count() == 4, "the budget holds"
    assert sweep.status == SweepStatus.FINISHED and sweep.finished_at


def test_a_trials_objective_is_the_mean_over_its_seeds_once_all_have_ended(create, run_through):
    sweep = create(seeds=[1, 2], budget=2, axes={"beta": {"values": [0.0]}})
    one, two = sweep.runs.order_by("pk")
    run_through(one, [0.2])
    assert trial_states(sweep) == ["RUNNING"]
    run_through(two, [0.6])
    assert study_of(sweep).trials[0].value == pytest.approx(0.4)
    (row,) = best_trials(sweep, sweep_trials(sweep))
    assert row.value == pytest.approx(0.4) and [r.pk for r in row.runs] == [one.pk, two.pk]


def test_a_metric_that_never_appears_fails_the_trial_and_says_so(create, run_through):
    sweep = create(budget=1, pruner="median", axes={"beta": {"values": [0.0]}},
                   objective={"metric": "eval/accuracy", "direction": "maximize"})
    (run,) = sweep.runs.all()
    run = run_through(run, [0.5, 0.6])
    assert run.status == RunStatus.SUCCEEDED, "the pruner stops nothing it cannot see"
    sweep.refresh_from_db()
    assert sweep.notice == (f"The metric eval/accuracy never appeared in run #{run.number}; "
                            f"the pruner stopped nothing; the metrics it logged: reward/mean.")
    assert trial_states(sweep) == ["FAIL"]


def test_the_median_pruner_cancels_a_run_below_the_median_and_says_why(create, run_through):
    sweep = create(budget=2, max_concurrent=2,
                   pruner={"median": {"startup_trials": 1, "warmup_steps": 0}},
                   axes={"learning_rate": {"values": [1e-5, 1e-9]}})
    good, poor = sweep.runs.order_by("sweep_trial")
    run_through(good, [0.5, 0.6, 0.7])
    poor = run_through(poor, [0.1], end=None)

    assert poor.status == RunStatus.CANCELLED
    assert poor.error_message == ("Pruned by the sweep's median pruner at step 1: value 0.1 "
                                  "below the median 0.5.")
    assert trial_states(sweep) == ["COMPLETE", "PRUNED"]
    progress = sweep_progress(sweep, sweep_trials(sweep))
    assert (progress.succeeded, progress.pruned, progress.cancelled) == (1, 1, 0)
    sweep.refresh_from_db()
    assert sweep.status == SweepStatus.FINISHED


def test_the_pruner_waits_for_its_warm_up_steps(create, run_through):
    sweep = create(budget=2, max_concurrent=2,
                   pruner={"median": {"startup_trials": 1, "warmup_steps": 3}},
                   axes={"learning_rate": {"values": [1e-5, 1e-9]}})
    good, poor = sweep.runs.order_by("sweep_trial")
    run_through(good, [0.5, 0.6, 0.7])
    poor = run_through(poor, [0.1, 0.1], end=None)
    assert poor.status == RunStatus.RUNNING
    poor = run_through(poor, [0.1, 0.1, 0.1], end=None)
    assert poor.status == RunStatus.CANCELLED and "at step 3" in poor.error_message


def test_a_run_outside_sweeps_costs_the_pruner_one_lookup_then_none(experiment, user,
                                                                   django_assert_num_queries):
    from webapp.runs.services import run_launch

    run = run_launch(experiment=experiment, user=user)
    with django_assert_num_queries(1):
        sweep_metrics_stored(run_id=run.pk, keys=frozenset({"reward/mean"}))
    with django_assert_num_queries(0):
        sweep_metrics_stored(run_id=run.pk, keys=frozenset({"reward/mean"}))


def test_cancelling_a_sweep_cancels_its_queued_and_running_runs(create, run_through, user):
    sweep = create(method="tpe", budget=6, max_concurrent=3,
                   axes={"learning_rate": {"log_uniform": [1e-7, 1e-5]}})
    done, running, queued = sweep.runs.order_by("sweep_trial")
    run_through(done, [0.5])
    run_through(running, [0.1], end=None)

    asked_after_done = sweep.runs.get(sweep_trial=3)

    cancelled = sweep_cancel(sweep=sweep, user=user)

    assert cancelled == 3
    statuses = dict(sweep.runs.values_list("pk", "status"))
    assert statuses.pop(done.pk) == RunStatus.SUCCEEDED
    assert statuses == {running.pk: RunStatus.CANCELLED, queued.pk: RunStatus.CANCELLED,
                        asked_after_done.pk: RunStatus.CANCELLED}
    sweep.refresh_from_db()
    assert sweep.status == SweepStatus.CANCELLED and sweep.finished_at
    with pytest.raises(ValidationError, match="has ended already"):
        sweep_cancel(sweep=sweep, user=user)


def test_a_cancelled_sweep_asks_for_no_more_trials(create, run_through, user,
                                                  django_capture_on_commit_callbacks):
    sweep = create(method="tpe", budget=4, max_concurrent=1,
                   axes={"learning_rate": {"log_uniform": [1e-7, 1e-5]}})
    with django_capture_on_commit_callbacks(execute=True):
        sweep_cancel(sweep=sweep, user=user)
    assert sweep.runs.count() == 1
    assert trial_states(sweep) == ["FAIL"]


def test_a_sweeps_runs_wait_while_max_concurrent_of_them_run(create):
    sweep = create(max_concurrent=1)
    first, second = list(sweep.runs.order_by("sweep_trial"))[:2]
    assert sweep_wait_reason(second) is None
    run_claim(run_id=first.pk, worker="w")
    assert sweep_wait_reason(second) == ("The sweep lr sweep runs at most 1 at once "
                                         "(1 running).")


def test_the_claim_check_is_registered_for_the_queue(create):
    from webapp.runs.services import run_claim_next

    sweep = create(max_concurrent=1)
    claimed = run_claim_next(queue="cpu", worker="w")
    assert Run.objects.get(pk=claimed).sweep == sweep
    assert run_claim_next(queue="cpu", worker="w") is None


def test_a_claim_leaves_out_the_runs_of_a_sweep_at_its_limit_up_front(
        create, django_assert_max_num_queries):
    from webapp.runs.services import run_claim_next
    from webapp.sweeps.services import sweeps_held_back

    sweep = create(max_concurrent=1)
    first = run_claim_next(queue="cpu", worker="w")
    waiting = sweep.runs.exclude(pk=first)
    assert set(Run.objects.filter(sweeps_held_back(), status="queued")) == set(waiting)
    # Not one query per held-back run: the sweep's whole queue is passed over at once.
    with django_assert_max_num_queries(3):
        assert run_claim_next(queue="cpu", worker="w") is None


def test_deleting_the_base_experiment_deletes_its_sweeps_and_their_studies(
        create, base, user, django_capture_on_commit_callbacks):
    from webapp.deletion.services import experiment_delete

    sweep = create()
    with django_capture_on_commit_callbacks(execute=True):
        sweep_cancel(sweep=sweep, user=user)
    # Cancelled runs are deleted once their worker may have stopped them (no worker here).
    Run.objects.filter(sweep=sweep).update(finished_at=timezone.now() - timedelta(hours=1))
    assert sweep.study_name in study_names()
    with django_capture_on_commit_callbacks(execute=True):
        experiment_delete(experiment=base, user=user)
    assert not Sweep.objects.exists()
    assert sweep.study_name not in study_names()
