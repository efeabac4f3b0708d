"""Writes for sweeps: create one (its study, and its runs), tell its study each trial's outcome
as runs end and ask for the next (TPE), stop poor runs early (the median pruner), cancel it.

A trial is one point of the search space, run once per seed; its objective is the mean over its
runs of the last value each logged of the objective metric. A trial is COMPLETE when all its
runs succeeded with that metric, PRUNED when the pruner stopped its run, FAIL otherwise.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from statistics import median

import optuna
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from optuna.trial import TrialState

from webapp.runs.models import TERMINAL_STATUSES, MetricPoint, Run, RunStatus
from webapp.runs.services import run_cancel, run_launch
from webapp.sweeps.definition import Definition
from webapp.sweeps.models import Sweep, SweepMethod, SweepStatus
from webapp.sweeps.study import (
    distributions,
    study_create,
    study_delete,
    study_of,
    study_storage,
    trials_ask,
)

logger = logging.getLogger(__name__)

ACTIVE = [RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING]
# The sweep page's notice keeps this many characters (the newest lines go when it is full).
NOTICE_MAX = 4000


def sweep_create(*, definition: Definition, user) -> Sweep:
    """Create the sweep and its study, and launch its runs: a grid's or a random search's all at
    once, TPE's first batch (as many trials as max_concurrent runs hold). The runs are created in
    one transaction: a trial that cannot run (ValidationError, saying which) creates nothing,
    and its study is deleted."""
    study_name = f"rlab-sweep-{uuid.uuid4().hex}"
    study = study_create(study_name=study_name, method=definition.method,
                         direction=definition.direction)
    try:
        return _sweep_create(definition=definition, user=user, study=study,
                             study_name=study_name)
    except BaseException:
        study_delete(study_name)
        raise


def _sweep_create(*, definition: Definition, user, study: optuna.Study,
                  study_name: str) -> Sweep:
    sweep = Sweep(
        project=definition.experiment.project, experiment=definition.experiment,
        name=definition.name, created_by=user, method=definition.method, axes=definition.axes,
        seeds=definition.seeds, budget=definition.budget,
        max_concurrent=definition.max_concurrent, objective=definition.metric,
        direction=definition.direction, pruner=definition.pruner,
        pruner_startup_trials=definition.pruner_startup_trials,
        pruner_warmup_steps=definition.pruner_warmup_steps,
        base_config=definition.base_config, study_name=study_name)
    if sweep.method == SweepMethod.TPE:
        count = min(_batch(sweep), sweep.trials_planned)
        trials = trials_ask(study, sweep.axes, count)
    else:
        points = sweep.grid_points() if sweep.method == SweepMethod.GRID else None
        trials = trials_ask(study, sweep.axes, sweep.trials_planned, points)
    try:
        with transaction.atomic():
            sweep.save()
            for trial in trials:
                _trial_launch(sweep, trial.number, trial.params, user)
    except IntegrityError:
        raise ValidationError(f"This project has a sweep named {sweep.name!r} already.") from None
    return sweep


def _batch(sweep: Sweep) -> int:
    """How many trials run at once: as many as max_concurrent runs hold, one at least."""
    return max(1, sweep.max_concurrent // sweep.runs_per_trial)


def _trial_launch(sweep: Sweep, number: int, params: dict, user) -> list[Run]:
    """Launch the trial's runs, one per seed; ValidationError (saying which trial) if its config
    cannot run."""
    runs = []
    for seed in sweep.seeds or [None]:
        overrides = {**sweep.base_config, **params}
        detail = f"sweep {sweep.name}, trial {number}"
        if seed is not None:
            overrides["seed"] = seed
            detail += f", seed {seed}"
        try:
            runs.append(run_launch(experiment=sweep.experiment, user=user, overrides=overrides,
                                   detail=detail, sweep=sweep, sweep_trial=number))
        except ValidationError as exc:
            shown = ", ".join(f"{name}={value!r}" for name, value in params.items())
            raise ValidationError(f"Trial {number} ({shown}) cannot run: "
                                  f"{' '.join(exc.messages)}") from None
    return runs


def sweep_cancel(*, sweep: Sweep, user) -> int:
    """Cancel the sweep and, in the same transaction, its queued and running runs through the
    runs' own cancel; its study is told as each run's end is committed. Returns how many runs
    were cancelled; ValidationError if the sweep had ended."""
    with transaction.atomic():
        ended = Sweep.objects.filter(pk=sweep.pk, status=SweepStatus.RUNNING).update(
            status=SweepStatus.CANCELLED, finished_at=timezone.now())
        if not ended:
            raise ValidationError(f"The sweep {sweep.name} has ended already.")
        runs = Run.objects.filter(sweep=sweep, status__in=ACTIVE).select_related(
            "experiment__project")
        cancelled = sum(run_cancel(run=run, user=user) for run in runs)
    sweep.refresh_from_db()
    return cancelled


def sweep_wait_reason(run: Run) -> str | None:
    """The claim check (webapp.runs.services.claim_check_register): a sweep's run waits while
    max_concurrent of its runs are starting or running. One query, as a claim may walk past
    many of a big sweep's queued runs."""
    if run.sweep_id is None:
        return None
    sweep = (Sweep.objects.filter(pk=run.sweep_id)
             .annotate(active=Count("runs", filter=Q(runs__status__in=[RunStatus.STARTING,
                                                                       RunStatus.RUNNING])))
             .values("name", "max_concurrent", "active").first())
    if sweep is None or sweep["active"] < sweep["max_concurrent"]:
        return None
    return (f"The sweep {sweep['name']} runs at most {sweep['max_concurrent']} at once "
            f"({sweep['active']} running).")


def sweeps_held_back() -> Q:
    """The queued runs that sweep_wait_reason holds back now, as a condition on Run: those of
    the sweeps whose max_concurrent runs are starting or running (one query)."""
    full = (Sweep.objects.filter(status=SweepStatus.RUNNING)
            .annotate(active=Count("runs", filter=Q(runs__status__in=[RunStatus.STARTING,
                                                                      RunStatus.RUNNING])))
            .filter(active__gte=F("max_concurrent")).values_list("pk", flat=True))
    return Q(sweep_id__in=list(full))


@contextmanager
def _sweep_locked(sweep_id: int) -> Iterator[Sweep | None]:
    """The sweep, locked while its study is told and asked, so two runs ending at once never
    ask the same next trial twice. On SQLite, where one writer holds the whole file, Optuna's
    own connection would wait for this transaction forever: there the sweep is read unlocked
    (an embedded install has one worker)."""
    if connection.vendor == "sqlite":
        yield Sweep.objects.filter(pk=sweep_id).first()
        return
    with transaction.atomic():
        yield Sweep.objects.select_for_update().filter(pk=sweep_id).first()


def sweep_run_ended(*, run_id: int) -> None:
    """A run of a sweep ended: once its trial's runs have all ended, tell the study the trial's
    outcome; for TPE, ask and launch the next trials; once nothing is left to run, the sweep
    is finished."""
    row = Run.objects.filter(pk=run_id).values_list("sweep_id", "sweep_trial").first()
    if row is None or row[0] is None:
        return
    sweep_id, number = row
    with _sweep_locked(sweep_id) as sweep:
        if sweep is None:
            return
        study = study_of(sweep)
        runs = list(Run.objects.filter(sweep=sweep, sweep_trial=number).order_by("number"))
        if all(run.status in TERMINAL_STATUSES for run in runs):
            if _trial_state(study, number) == TrialState.RUNNING:
                _trial_tell(sweep, study, number, runs)
        if sweep.status == SweepStatus.RUNNING:
            if sweep.method == SweepMethod.TPE:
                _trials_launch_more(sweep, study)
            if not Run.objects.filter(sweep=sweep, status__in=ACTIVE).exists():
                Sweep.objects.filter(pk=sweep.pk, status=SweepStatus.RUNNING).update(
                    status=SweepStatus.FINISHED, finished_at=timezone.now())


def _trial_state(study: optuna.Study, number: int) -> TrialState:
    storage = study_storage()
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return storage.get_trial(trial_id).state


def _trial_tell(sweep: Sweep, study: optuna.Study, number: int, runs: Sequence[Run]) -> None:
    values = []
    for run in runs:
        if run.status != RunStatus.SUCCEEDED:
            continue
        last = (MetricPoint.objects.filter(run=run, key=sweep.objective).order_by("-step")
                .values_list("value", flat=True).first())
        if last is None:
            logged = sorted(MetricPoint.objects.filter(run=run)
                            .values_list("key", flat=True).distinct())
            stopped = "; the pruner stopped nothing" if sweep.pruner else ""
            _notice_add(sweep, f"The metric {sweep.objective} never appeared in run "
                               f"#{run.number}{stopped}; the metrics it logged: "
                               f"{', '.join(logged[:30]) or 'none'}"
                               f"{' …' if len(logged) > 30 else ''}.")
        else:
            values.append(last)
    complete = len(values) == len(runs) and all(math.isfinite(value) for value in values)
    if complete:
        study.tell(number, sum(values) / len(values))
    else:
        study.tell(number, state=TrialState.FAIL)


def _trials_launch_more(sweep: Sweep, study: optuna.Study) -> None:
    asked = len(study.get_trials(deepcopy=False))
    active = (Run.objects.filter(sweep=sweep, status__in=ACTIVE)
              .values("sweep_trial").distinct().count())
    for _ in range(min(_batch(sweep) - active, sweep.trials_planned - asked)):
        trial = study.ask(distributions(sweep.axes))
        try:
            with transaction.atomic():
                _trial_launch(sweep, trial.number, trial.params, sweep.created_by)
        except ValidationError as exc:
            study.tell(trial.number, state=TrialState.FAIL)
            _notice_add(sweep, " ".join(exc.messages) + " The sweep asks for no more trials.")
            return


def _notice_add(sweep: Sweep, line: str) -> None:
    sweep.refresh_from_db(fields=["notice"])
    if line in sweep.notice.splitlines():
        return
    notice = f"{sweep.notice}\n{line}".strip()
    if len(notice) <= NOTICE_MAX:
        Sweep.objects.filter(pk=sweep.pk).update(notice=notice)


@lru_cache(maxsize=4096)
def _pruning_sweep_of(run_id: int) -> tuple[int, str] | None:
    """(sweep id, objective) of the run's sweep when that sweep prunes; None for any other run.
    A run's sweep and a sweep's objective never change, so each process asks once per run."""
    return (Run.objects.filter(pk=run_id, sweep__pruner=True)
            .values_list("sweep_id", "sweep__objective").first())


def sweep_metrics_stored(*, run_id: int, keys: frozenset[str]) -> None:
    """New points of a run arrived: for a run of a pruning sweep whose objective is among them,
    report the objective's new points to the trial, and if the median pruner says so, stop the
    run through its normal cancel, saying why."""
    found = _pruning_sweep_of(run_id)
    if found is None or found[1] not in keys:
        return
    sweep = Sweep.objects.filter(pk=found[0], status=SweepStatus.RUNNING).first()
    run = Run.objects.filter(pk=run_id, status__in=ACTIVE).select_related(
        "experiment__project").first()
    if sweep is None or run is None:
        return
    study = study_of(sweep)
    storage = study_storage()
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, run.sweep_trial)
    reported = storage.get_trial(trial_id)
    if reported.state != TrialState.RUNNING:
        return
    last = max(reported.intermediate_values, default=-1)
    trial = optuna.Trial(study, trial_id)
    points = (MetricPoint.objects.filter(run=run, key=sweep.objective, step__gt=last)
              .order_by("step").values_list("step", "value"))
    step = None
    for step, value in points:
        if math.isfinite(value):
            trial.report(value, step)
    if step is None or not trial.should_prune():
        return
    reason = _pruned_because(sweep, study, trial_id, step)
    # Told before the cancel commits: the run's end then finds its trial told, not failed.
    study.tell(run.sweep_trial, state=TrialState.PRUNED)
    with transaction.atomic():
        if run_cancel(run=run, user=sweep.created_by):
            Run.objects.filter(pk=run.pk).update(error_message=reason)
    logger.info("run %s: %s", run.pk, reason)


def _pruned_because(sweep: Sweep, study: optuna.Study, trial_id: int, step: int) -> str:
    """The pruner's reason in words, as optuna's MedianPruner decides: the trial's best value up
    to `step` against the median of the finished trials' values at `step`."""
    maximize = sweep.direction == "maximize"
    own = [value for value in study_storage().get_trial(trial_id).intermediate_values.values()
           if math.isfinite(value)]
    others = [trial.intermediate_values[step]
              for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if math.isfinite(trial.intermediate_values.get(step, math.nan))]
    if not own or not others:
        return f"Pruned by the sweep's median pruner at step {step}."
    side = "below" if maximize else "above"
    return (f"Pruned by the sweep's median pruner at step {step}: value "
            f"{(max if maximize else min)(own):g} {side} the median {median(others):g}.")
