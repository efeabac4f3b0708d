"""The reading calls of MLflow's tracking API: runs/search, experiments/search,
metrics/get-history and metrics/get-history-bulk-interval (the MLflow UI's charts), answered in
MLflow's JSON (mlflow/protos/service.proto) with MLflow's limits and errors.

A page token is opaque to the client; it holds the offset of the next page, as MLflow's own
server's does. Only the project's tracked experiments and their runs are searched."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import replace
from typing import Annotated

from django.db.models import Q
from pydantic import BeforeValidator, Field

from webapp.common.inputs import BIGINT_MAX, Text
from webapp.experiments.models import ExperimentKind
from webapp.mlflow_compat.bodies import Body, Required, RunBody, Step
from webapp.mlflow_compat.endpoint import endpoint
from webapp.mlflow_compat.entities import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    RUN_NAME_TAG,
    STATUS_TO_MLFLOW,
    experiment_json,
    point_json,
)
from webapp.mlflow_compat.entities import run_json as run_entity_json
from webapp.mlflow_compat.errors import MlflowError
from webapp.mlflow_compat.experiment_search import experiments_search
from webapp.mlflow_compat.views import run_of
from webapp.projects.models import Project
from webapp.runs.models import MetricPoint, Run
from webapp.runs.run_search import latest_metrics, runs_search
from webapp.runs.search_grammar import RUNS, SearchError
from webapp.teams.models import Role

# MLflow's limits (mlflow/store/tracking/__init__.py, mlflow/server/handlers.py).
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50_000
BULK_MAX_RUNS = 100
BULK_MAX_RESULTS_PER_RUN = 2500
MLFLOW_RUNS = replace(RUNS, status_words=STATUS_TO_MLFLOW, name_tag=RUN_NAME_TAG)
"""Runs as MLflow searches them: by MLflow's status words, and their name as a tag."""
VIEW_TYPES = {"ACTIVE_ONLY": "ACTIVE_ONLY", "DELETED_ONLY": "DELETED_ONLY", "ALL": "ALL",
              "1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}


def _listed(value):
    """A repeated field, which a GET query sends once per item: one item arrives bare."""
    return [value] if isinstance(value, str) else value


Strings = Annotated[list[Text], BeforeValidator(_listed)]


class SearchRuns(Body):
    experiment_ids: Strings = Field(default_factory=list)
    filter: Text = ""
    run_view_type: str = "ACTIVE_ONLY"
    max_results: int = Field(SEARCH_MAX_RESULTS_DEFAULT, ge=1, le=SEARCH_MAX_RESULTS_THRESHOLD)
    order_by: Strings = Field(default_factory=list)
    page_token: str = ""


class SearchExperiments(Body):
    filter: Text = ""
    view_type: str = "ACTIVE_ONLY"
    max_results: int = Field(SEARCH_MAX_RESULTS_DEFAULT, ge=1, le=SEARCH_MAX_RESULTS_THRESHOLD)
    order_by: Strings = Field(default_factory=list)
    page_token: str = ""


class MetricHistory(RunBody):
    metric_key: Required
    max_results: int | None = Field(None, ge=1, le=BIGINT_MAX)
    page_token: str = ""


class MetricHistoryBulkInterval(Body):
    run_ids: Annotated[Strings, Field(min_length=1, max_length=BULK_MAX_RUNS)]
    metric_key: Required
    start_step: Step | None = None
    end_step: Step | None = None
    max_results: int = Field(BULK_MAX_RESULTS_PER_RUN, ge=1, le=BULK_MAX_RESULTS_PER_RUN)


def offset_of(page_token: str) -> int:
    """The offset a page token holds; INVALID_PARAMETER_VALUE for one this server did not
    give."""
    if not page_token:
        return 0
    try:
        offset = json.loads(base64.b64decode(page_token, validate=True))["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        offset = None
    if not isinstance(offset, int) or not 0 <= offset <= BIGINT_MAX // 2:
        raise MlflowError("INVALID_PARAMETER_VALUE", f"Invalid page token {page_token!r}: pass "
                                                     "the next_page_token of a previous answer.")
    return offset


def page(rows, offset: int, size: int) -> tuple[list, dict]:
    """One page of a queryset, and the next page's token when there are more rows."""
    found = list(rows[offset:offset + size + 1])
    more = {}
    if len(found) > size:
        token = json.dumps({"offset": offset + size}).encode()
        more = {"next_page_token": base64.b64encode(token).decode()}
    return found[:size], more


def view_type(value: str) -> str:
    if value not in VIEW_TYPES:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"Invalid view type {value!r}: ACTIVE_ONLY, DELETED_ONLY or ALL.")
    return VIEW_TYPES[value]


def searched(search):
    """A search's queryset, with a grammar error as MLflow's INVALID_PARAMETER_VALUE."""
    try:
        return search()
    except SearchError as exc:
        raise MlflowError("INVALID_PARAMETER_VALUE", str(exc)) from None


def tracked_runs(project: Project):
    return Run.objects.filter(experiment__project=project,
                              experiment__kind=ExperimentKind.TRACKED)


@endpoint("POST", Role.VIEWER, SearchRuns)
def runs_search_view(*, project: Project, user, body: SearchRuns) -> dict:
    """Runs of the given experiments; an id of no experiment here finds nothing, as in MLflow.
    rlab keeps no deleted runs, so DELETED_ONLY finds none."""
    ids = {int(i) for i in body.experiment_ids
           if i.isascii() and i.isdigit() and len(i) < 19 and i != DEFAULT_EXPERIMENT_ID}
    chosen = Q(experiment_id__in=ids)
    if DEFAULT_EXPERIMENT_ID in body.experiment_ids:
        chosen |= Q(experiment__name=DEFAULT_EXPERIMENT_NAME)
    runs = (tracked_runs(project).filter(chosen).select_related("experiment", "launched_by")
            .prefetch_related("dataset_inputs"))
    if view_type(body.run_view_type) == "DELETED_ONLY":
        runs = runs.none()
    runs = searched(lambda: runs_search(runs, filter_string=body.filter,
                                        order_by=body.order_by, schema=MLFLOW_RUNS))
    found, more = page(runs, offset_of(body.page_token), body.max_results)
    latest = latest_metrics([run.pk for run in found])
    return {"runs": [run_entity_json(run, latest[run.pk]) for run in found], **more}


@endpoint("POST", Role.VIEWER, SearchExperiments)
def experiments_search_view(*, project: Project, user, body: SearchExperiments) -> dict:
    experiments = project.experiments.filter(kind=ExperimentKind.TRACKED)
    if view_type(body.view_type) == "DELETED_ONLY":
        experiments = experiments.none()
    experiments = searched(lambda: experiments_search(
        experiments, filter_string=body.filter, order_by=body.order_by))
    found, more = page(experiments, offset_of(body.page_token), body.max_results)
    return {"experiments": [experiment_json(experiment) for experiment in found], **more}


@endpoint("GET", Role.VIEWER, MetricHistory)
def metric_history(*, project: Project, user, body: MetricHistory) -> dict:
    """Every point of one metric of a run, ordered by time, step and value as MLflow orders
    them; `max_results` at a time when given, else all."""
    run = run_of(project, body)
    points = MetricPoint.objects.filter(run=run, key=body.metric_key).order_by(
        "wall_time", "step", "value")
    offset = offset_of(body.page_token)
    if body.max_results is None:
        found, more = list(points[offset:]), {}
    else:
        found, more = page(points, offset, body.max_results)
    return {"metrics": [point_json(point) for point in found], **more}


def sampled_points(run: Run, key: str, size: int, steps: tuple[int, int] | None
                   ) -> list[MetricPoint]:
    """Up to `size` points spread evenly over a metric's history (or the steps in `steps`), as
    MLflow samples them: the first of each of `size` equal buckets of points in step order,
    and always the last point."""
    table = MetricPoint._meta.db_table
    within, params = "", [size, run.pk, key]
    if steps is not None:
        within, params = " AND step BETWEEN %s AND %s", [*params, *steps]
    points = list(MetricPoint.objects.raw(f"""
        SELECT id, run_id, key, step, value, wall_time FROM (
            SELECT *, row_number() OVER (PARTITION BY bucket ORDER BY step, wall_time, value)
                AS rank
            FROM (SELECT id, run_id, key, step, value, wall_time,
                         ntile(%s) OVER (ORDER BY step, wall_time, value) AS bucket
                  FROM {table} WHERE run_id = %s AND key = %s{within}) AS bucketed
        ) AS ranked WHERE rank = 1 ORDER BY step, wall_time, value""", params))
    last = MetricPoint.objects.filter(run=run, key=key)
    if steps is not None:
        last = last.filter(step__range=steps)
    last = last.order_by("-step", "-wall_time", "-value").first()
    if last is not None and (not points or points[-1].pk != last.pk):
        if len(points) >= size:
            points[-1] = last
        else:
            points.append(last)
    return points


@endpoint("GET", Role.VIEWER, MetricHistoryBulkInterval)
def metric_history_bulk_interval(*, project: Project, user,
                                 body: MetricHistoryBulkInterval) -> dict:
    """One metric of several runs, each sampled to at most `max_results` points, with its run's
    id: what the MLflow UI charts."""
    if (body.start_step is None) != (body.end_step is None):
        raise MlflowError("INVALID_PARAMETER_VALUE", "If either start step or end step are "
                                                     "specified, both must be specified.")
    steps = None
    if body.start_step is not None:
        if body.start_step > body.end_step:
            raise MlflowError("INVALID_PARAMETER_VALUE",
                              "end_step must be greater than start_step. Found "
                              f"start_step={body.start_step} and end_step={body.end_step}.")
        steps = (body.start_step, body.end_step)
    runs = [run_of(project, RunBody(run_id=run_id)) for run_id in body.run_ids]
    return {"metrics": [{**point_json(point), "run_id": str(run.pk)}
                        for run in runs
                        for point in sampled_points(run, body.metric_key, body.max_results,
                                                    steps)]}
