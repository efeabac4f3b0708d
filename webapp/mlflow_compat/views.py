"""The tracking endpoints, answered as an MLflow tracking server answers the mlflow client:
GET parameters or a JSON body in, JSON out, MLflow's error JSON for anything refused.

Each acts as the token's user in the project of the tracking URI, with the web pages' rules: a
project the user cannot see is RESOURCE_DOES_NOT_EXIST (404), a viewer is PERMISSION_DENIED
(403) on every write. Only the project's tracked experiments and their runs are seen here: the
experiments rlab runs itself take no data from scripts."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.csrf import csrf_exempt

from webapp.experiments.models import Experiment, ExperimentKind
from webapp.mlflow_compat.endpoint import Body, endpoint, required
from webapp.mlflow_compat.entities import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    RUN_NAME_TAG,
    STATUS_FROM_MLFLOW,
    experiment_json,
    from_ms,
    number_in,
    run_info_json,
    run_json,
    run_name,
)
from webapp.mlflow_compat.errors import MlflowError, error_response
from webapp.projects.models import Project
from webapp.runs.models import METRIC_KEY_MAX_LENGTH, Run, RunStatus
from webapp.runs.services import (
    MetricSample,
    metrics_ingest,
    tracked_experiment_get_or_create,
    tracked_run_create,
    tracked_run_finish,
    tracked_run_log_params,
    tracked_run_rename,
    tracked_run_set_tags,
)
from webapp.teams.models import Role

def tracked(experiment: Experiment) -> Experiment:
    if not experiment.is_tracked:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"{experiment.name!r} is a {experiment.kind} experiment, launched "
                          "from rlab: it takes no runs from scripts. Log to another experiment "
                          "name.")
    return experiment


def experiment_with_id(project: Project, experiment_id: str) -> Experiment:
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        found = project.experiments.filter(name=DEFAULT_EXPERIMENT_NAME).first()
    elif experiment_id.isdigit() and len(experiment_id) < 19:
        found = project.experiments.filter(pk=int(experiment_id)).first()
    else:
        found = None
    if found is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"No experiment with id {experiment_id} in project {project.name}.")
    return tracked(found)


def run_of(project: Project, body: Body) -> Run:
    """The tracked run a request names (`run_id`, or `run_uuid` as older clients send it)."""
    run_id = str(body.get("run_id") or required(body, "run_uuid"))
    runs = Run.objects.filter(experiment__project=project,
                              experiment__kind=ExperimentKind.TRACKED)
    run = (runs.select_related("experiment", "launched_by").filter(pk=int(run_id)).first()
           if run_id.isdigit() and len(run_id) < 19 else None)
    if run is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"Run with id={run_id} not found in project {project.name}.")
    return run


def active_run_of(project: Project, body: Body) -> Run:
    """The run, which must still be running: an ended run's record is closed."""
    run = run_of(project, body)
    if run.is_terminal:
        raise MlflowError("RESOURCE_CONFLICT",
                          f"Run {run_name(run)} (id {run.pk}) has ended ({run.status}): it "
                          "takes no more data. Start a new run.")
    return run


def rename(run: Run, name: str | None) -> None:
    if name and name not in (run.name, run_name(run)):
        tracked_run_rename(run_id=run.pk, name=name)
        run.refresh_from_db(fields=["name"])


def string_pairs(items: Any, what: str) -> dict[str, str]:
    """MLflow's [{"key": ..., "value": ...}] as a dict; a key sent twice must keep its value."""
    pairs: dict[str, str] = {}
    for item in items or []:
        key, value = str(required(item, "key")), str(item.get("value", ""))
        if pairs.get(key, value) != value:
            raise MlflowError("INVALID_PARAMETER_VALUE",
                              f"The {what} {key!r} was sent twice with different values.")
        pairs[key] = value
    return pairs


def metric_sample(item: Body) -> MetricSample:
    key = str(required(item, "key"))
    if len(key) > METRIC_KEY_MAX_LENGTH:  # MLflow allows 250
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"Metric names are at most {METRIC_KEY_MAX_LENGTH} characters: {key!r}.")
    try:
        step = int(item.get("step") or 0)
    except (TypeError, ValueError):
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"The step of {key!r} must be an integer, not {item.get('step')!r}.")
    return MetricSample(key=key, step=step, value=number_in(item.get("value"), key),
                        wall_time=from_ms(required(item, "timestamp"), "timestamp"))


def set_tags(run: Run, tags: dict[str, str]) -> None:
    rename(run, tags.pop(RUN_NAME_TAG, None))
    if tags:
        tracked_run_set_tags(run_id=run.pk, tags=tags)


@endpoint("GET", Role.VIEWER)
def experiment_get_by_name(*, project: Project, user, body: Body) -> dict:
    name = str(required(body, "experiment_name")).strip()
    experiment = project.experiments.filter(name=name).first()
    if experiment is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"No experiment named {name!r} in project {project.name}.")
    return {"experiment": experiment_json(tracked(experiment))}


@endpoint("GET", Role.VIEWER)
def experiment_get(*, project: Project, user, body: Body) -> dict:
    experiment = experiment_with_id(project, str(required(body, "experiment_id")))
    return {"experiment": experiment_json(experiment)}


@endpoint("POST", Role.MEMBER)
def experiment_create(*, project: Project, user, body: Body) -> dict:
    """A new tracked experiment. A name already taken is RESOURCE_ALREADY_EXISTS, as in MLflow:
    mlflow.set_experiment, racing another process to create it, then looks it up."""
    name = str(required(body, "name")).strip()
    if project.experiments.filter(name=name).exists():
        raise MlflowError("RESOURCE_ALREADY_EXISTS",
                          f"Project {project.name} already has an experiment named {name!r}.")
    experiment = tracked_experiment_get_or_create(project=project, user=user, name=name)
    return {"experiment_id": str(experiment.pk)}


@endpoint("POST", Role.MEMBER)
def run_create(*, project: Project, user, body: Body) -> dict:
    """A running run; MLflow's default experiment (id 0) is the project's Default experiment,
    made on first use."""
    experiment_id = str(required(body, "experiment_id"))
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        experiment = tracked_experiment_get_or_create(project=project, user=user,
                                                      name=DEFAULT_EXPERIMENT_NAME)
    else:
        experiment = experiment_with_id(project, experiment_id)
    tags = string_pairs(body.get("tags"), "tag")
    name = body.get("run_name") or tags.get(RUN_NAME_TAG, "")
    tags.pop(RUN_NAME_TAG, None)
    started_at = from_ms(body["start_time"], "start_time") if body.get("start_time") else None
    run = tracked_run_create(experiment=experiment, user=user, name=str(name), tags=tags,
                             started_at=started_at)
    return {"run": run_json(run)}


@endpoint("GET", Role.VIEWER)
def run_get(*, project: Project, user, body: Body) -> dict:
    return {"run": run_json(run_of(project, body))}


@endpoint("POST", Role.MEMBER)
def run_update(*, project: Project, user, body: Body) -> dict:
    """End a run (FINISHED, FAILED, KILLED), or keep it running. An ended run stays ended: a
    script resuming it (RUNNING) is told to start a new run."""
    run = run_of(project, body)
    rename(run, body.get("run_name"))
    status = body.get("status")
    if status is not None:
        status = str(status)
        if status not in STATUS_FROM_MLFLOW:
            raise MlflowError("INVALID_PARAMETER_VALUE", f"Unknown run status {status!r}: one "
                                                         f"of {', '.join(STATUS_FROM_MLFLOW)}.")
        wanted = STATUS_FROM_MLFLOW[status]
        if run.is_terminal and run.status != wanted:
            raise MlflowError("RESOURCE_CONFLICT",
                              f"Run {run_name(run)} (id {run.pk}) has ended ({run.status}): "
                              f"it cannot become {status}. Start a new run.")
        if wanted != RunStatus.RUNNING and not run.is_terminal:
            end = from_ms(body["end_time"], "end_time") if body.get("end_time") else None
            tracked_run_finish(run_id=run.pk, status=wanted, finished_at=end)
            run.refresh_from_db()
    return {"run_info": run_info_json(run)}


@endpoint("POST", Role.MEMBER)
def run_log_metric(*, project: Project, user, body: Body) -> dict:
    run = active_run_of(project, body)
    metrics_ingest(run_id=run.pk, points=[metric_sample(body)])
    return {}


@endpoint("POST", Role.MEMBER)
def run_log_parameter(*, project: Project, user, body: Body) -> dict:
    run = active_run_of(project, body)
    tracked_run_log_params(run_id=run.pk,
                           params={str(required(body, "key")): str(body.get("value", ""))})
    return {}


@endpoint("POST", Role.MEMBER)
def run_set_tag(*, project: Project, user, body: Body) -> dict:
    run = active_run_of(project, body)
    set_tags(run, {str(required(body, "key")): str(body.get("value", ""))})
    return {}


@endpoint("POST", Role.MEMBER)
def run_log_batch(*, project: Project, user, body: Body) -> dict:
    """Metrics, parameters and tags at once, all or none. The metrics go to the database in one
    COPY (metrics_ingest); MLflow's client sends up to 1,000 a call."""
    run = active_run_of(project, body)
    points = [metric_sample(item) for item in body.get("metrics") or []]
    params = string_pairs(body.get("params"), "parameter")
    tags = string_pairs(body.get("tags"), "tag")
    with transaction.atomic():
        if params:
            tracked_run_log_params(run_id=run.pk, params=params)
        set_tags(run, tags)
        if points:
            metrics_ingest(run_id=run.pk, points=points)
    return {}


@csrf_exempt
def not_implemented(request: HttpRequest, project_id: int, path: str) -> HttpResponse:
    return error_response("NOT_IMPLEMENTED",
                          f"rlab's MLflow-compatible tracking does not implement {path}: it "
                          "takes experiments, runs, parameters, tags and metrics, not artifacts, "
                          "models, traces or searches.")


def project_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The tracking URI itself, which the client prints links under: the project's page."""
    return redirect("projects:detail", project_id=project_id)
