"""Run comparison: which of a project's runs a user picked, how their configs differ, and where
their metrics ended."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from training.spec.config import RunConfig
from webapp.projects.models import Project
from webapp.runs.metric_series import key_spans
from webapp.runs.models import Run
from webapp.runs.selectors import HEADLINE_METRICS, metric_keys, runs_for_user

MAX_COMPARED = 8  # one colour each in the charts' palette
MISSING = "—"


@dataclass(frozen=True)
class ConfigRow:
    key: str
    values: list[str]  # one per run, as shown; MISSING where the run has no such setting
    differs: bool


@dataclass(frozen=True)
class MetricRow:
    key: str
    values: list[tuple[int, float] | None]  # each run's last (step, value), None if not logged


def project_runs(user, project: Project) -> QuerySet[Run]:
    """The project's runs that the user can see, for the picker: by experiment, newest first."""
    return (runs_for_user(user).filter(experiment__project=project)
            .order_by("experiment__name", "experiment_id", "-number"))


def picked_runs(user, project: Project, ids: Iterable[str]) -> list[Run]:
    """The runs named by `ids`, in the order named, at most MAX_COMPARED. An id that is not a
    number, or names a run of another project or one the user cannot see, is left out without a
    word, as if it were not in the link: a shared link never tells whether such a run exists."""
    wanted: list[int] = []
    for raw in ids:
        try:
            run_id = int(raw)
        except ValueError:
            continue
        if run_id not in wanted:
            wanted.append(run_id)
    found = {run.pk: run for run in project_runs(user, project).filter(pk__in=wanted)}
    return [found[run_id] for run_id in wanted if run_id in found][:MAX_COMPARED]


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys, so they compare one by one.

    >>> flatten({"lr": 1e-05, "kl": {"beta": 0.1, "estimator": "k3"}})
    {'lr': 1e-05, 'kl.beta': 0.1, 'kl.estimator': 'k3'}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_diff(runs: list[Run]) -> list[ConfigRow]:
    """Every setting of the runs' configs, in the form's order (others after, sorted), with each
    run's value and whether they differ; a setting that some run lacks differs.

    >>> a = Run(config={"learning_rate": 1e-05, "seed": 1})
    >>> b = Run(config={"learning_rate": 1e-05, "seed": 2})
    >>> [(row.key, row.values, row.differs) for row in config_diff([a, b])]
    [('learning_rate', ['1e-05', '1e-05'], False), ('seed', ['1', '2'], True)]
    """
    configs = [flatten(run.config or {}) for run in runs]
    known = [f.name for f, _ in RunConfig.every_field()]  # every algorithm's settings too
    present = {key for config in configs for key in config}
    order = [key for key in known if key in present] + sorted(present - set(known))
    rows = []
    for key in order:
        values = [config.get(key, _ABSENT) for config in configs]
        rows.append(ConfigRow(key=key, values=[_shown(value) for value in values],
                              differs=len({_comparable(value) for value in values}) > 1))
    return rows


def last_values(runs: list[Run]) -> list[MetricRow]:
    """Each metric any of the runs logged (headline ones first), with every run's last value:
    the comparison a page without JavaScript can still show."""
    keys_by_run = [metric_keys(run) for run in runs]
    ends = [key_spans(run.pk, keys) for run, keys in zip(runs, keys_by_run)]
    every = {key for keys in keys_by_run for key in keys}
    headline = [key for key in HEADLINE_METRICS if key in every]
    order = headline + sorted(every - set(headline))
    return [MetricRow(key=key, values=[(span[key].last[0], span[key].last[1])
                                       if key in span else None for span in ends])
            for key in order]


class _Absent:
    pass


_ABSENT = _Absent()


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _comparable(value: Any) -> Any:
    """Equal settings compare equal: 1 and 1.0 alike, but true is not 1."""
    if value is _ABSENT:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ("number", float(value))
    return json.dumps(value, sort_keys=True)
