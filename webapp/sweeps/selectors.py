"""Reads for sweeps. Access goes through `get_sweep_for_user`, which 404s outsiders through the
project's own check; the sweep page's facts (progress, best trials, the parallel-coordinates
data, importances) come from the runs and the sweep's Optuna study."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from optuna.trial import FrozenTrial, TrialState

from webapp.projects.models import Project
from webapp.projects.selectors import projects_for_user
from webapp.runs.models import Run, RunStatus
from webapp.sweeps.models import Sweep
from webapp.sweeps.study import study_of
from webapp.teams.models import Role
from webapp.teams.selectors import require_role, user_has_role

# PED-ANOVA (optuna's default evaluator, which needs no scikit-learn, unlike fANOVA) splits the
# finished trials into a top quantile and the rest; with fewer it says nothing.
IMPORTANCE_MIN_TRIALS = 4
BEST_SHOWN = 10


def get_sweep_for_user(user, sweep_id: int, role: str = Role.VIEWER) -> Sweep:
    sweep = get_object_or_404(
        Sweep.objects.select_related("project__team", "experiment", "created_by")
        .filter(project__in=projects_for_user(user)), pk=sweep_id)
    require_role(user, sweep.project.team_id, role)
    return sweep


def can_steer(sweep: Sweep, user) -> bool:
    """Whether `user` may cancel the sweep: a member of its team."""
    return user_has_role(user, sweep.project.team_id, Role.MEMBER)


def project_sweeps(project: Project) -> QuerySet[Sweep]:
    return project.sweeps.select_related("experiment", "created_by").annotate(
        run_count=Count("runs"))


@dataclass(frozen=True)
class Progress:
    planned: int
    succeeded: int
    running: int
    queued: int
    pruned: int
    failed: int
    cancelled: int

    @property
    def ended(self) -> int:
        return self.succeeded + self.pruned + self.failed + self.cancelled


def sweep_progress(sweep: Sweep, trials: list[FrozenTrial]) -> Progress:
    """Its runs by state, of the runs it plans (a grid's combinations × seeds, or its budget).
    A run the pruner stopped counts as pruned, not cancelled."""
    pruned_trials = {trial.number for trial in trials if trial.state == TrialState.PRUNED}
    counts = {status: 0 for status in RunStatus.values}
    pruned = 0
    for status, trial in sweep.runs.values_list("status", "sweep_trial"):
        if status == RunStatus.CANCELLED and trial in pruned_trials:
            pruned += 1
        else:
            counts[status] += 1
    return Progress(
        planned=sweep.trials_planned * sweep.runs_per_trial,
        succeeded=counts[RunStatus.SUCCEEDED],
        running=counts[RunStatus.STARTING] + counts[RunStatus.RUNNING],
        queued=counts[RunStatus.QUEUED], pruned=pruned,
        failed=counts[RunStatus.FAILED] + counts[RunStatus.CRASHED]
        + counts[RunStatus.INTERRUPTED],
        cancelled=counts[RunStatus.CANCELLED])


def sweep_trials(sweep: Sweep) -> list[FrozenTrial]:
    return study_of(sweep).get_trials(deepcopy=False)


@dataclass(frozen=True)
class TrialRow:
    number: int
    value: float
    params: dict[str, Any]
    runs: list[Run]
    axis_values: list[Any]  # the params in the order of the sweep's axes, for a table's columns


def best_trials(sweep: Sweep, trials: list[FrozenTrial], limit: int = BEST_SHOWN
                ) -> list[TrialRow]:
    """The finished trials, best objective first, each with its runs."""
    done = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    done.sort(key=lambda trial: trial.value, reverse=sweep.direction == "maximize")
    done = done[:limit]
    runs: dict[int, list[Run]] = {}
    for run in (sweep.runs.filter(sweep_trial__in=[trial.number for trial in done])
                .select_related("experiment").order_by("number")):
        runs.setdefault(run.sweep_trial, []).append(run)
    return [TrialRow(number=trial.number, value=trial.value, params=trial.params,
                     runs=runs.get(trial.number, []),
                     axis_values=[_shown(trial.params.get(name)) for name in sweep.axes])
            for trial in done]


def _shown(value: Any) -> Any:
    """A float as a table shows it: four significant digits, not a draw's seventeen."""
    return f"{value:.4g}" if isinstance(value, float) else value


def plot_data(sweep: Sweep, trials: list[FrozenTrial]) -> dict[str, Any]:
    """The parallel-coordinates plot's data: one axis per setting (log for a log-uniform
    range; categorical for listed values, in their listed order) and the objective; one line
    per finished trial."""
    axes = []
    for name, axis in sweep.axes.items():
        kind, given = next(iter(axis.items()))
        if kind == "values":
            axes.append({"name": name, "scale": "categorical", "values": given})
        else:
            axes.append({"name": name, "scale": "log" if kind == "log_uniform" else "linear",
                         "low": given[0], "high": given[1]})
    lines = [{"trial": trial.number, "params": trial.params, "value": trial.value}
             for trial in trials if trial.state == TrialState.COMPLETE
             and trial.value is not None and math.isfinite(trial.value)]
    return {"axes": axes, "objective": sweep.objective, "direction": sweep.direction,
            "lines": lines}


@dataclass(frozen=True)
class Importances:
    values: list[tuple[str, float]]  # empty until `finished` reaches `needed`
    finished: int
    needed: int = IMPORTANCE_MIN_TRIALS


def importances(sweep: Sweep, trials: list[FrozenTrial]) -> Importances:
    """Each setting's importance for the objective (optuna's get_param_importances, by its
    default PED-ANOVA evaluator), or how many more finished trials it needs."""
    done = sum(trial.state == TrialState.COMPLETE for trial in trials)
    if done < IMPORTANCE_MIN_TRIALS:
        return Importances(values=[], finished=done)
    with warnings.catch_warnings():
        # "Parameter importances will be equal" on too few trials: the page says so itself.
        warnings.simplefilter("ignore")
        found = optuna.importance.get_param_importances(study_of(sweep))
    return Importances(values=sorted(found.items(), key=lambda item: -item[1]), finished=done)

