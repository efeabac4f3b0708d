"""The tracking calls a run's own token may make (webapp.api.run_scope): those the real clients
make for one run, found by running them against rlab. The mlflow client's fluent API resuming
the run (MLFLOW_RUN_ID: runs/get, runs/update), its logging (log-metric, log-parameter,
set-tag, log-batch, log-inputs), its artifacts (the run's mlflow-artifacts folder), reading
back a metric's history, and its experiment (by id, or by name for MLFLOW_EXPERIMENT_NAME);
transformers' MLflowCallback makes the same calls, and with HF_MLFLOW_LOG_ARTIFACTS logs each
checkpoint as a logged model of the run (logged-models, runs/outputs, the model's files).

Every check also needs the tracking URI's project to be the run's. A body is read here as the
view reads it (webapp.mlflow_compat.endpoint.read_body), so both see the same run; a body that
cannot be read is refused here in MLflow's words, as the view would refuse it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from webapp.api.run_scope import Check, Route, RunScope
from webapp.artifacts.models import LoggedModel
from webapp.mlflow_compat import bodies
from webapp.mlflow_compat.artifacts import LOCATION
from webapp.mlflow_compat.endpoint import read_body
from webapp.mlflow_compat.logged_models import ModelCreate, RunOutputs
from webapp.mlflow_compat.search import MetricHistory
from webapp.mlflow_compat.urls import ARTIFACTS, PREFIX

# Where webapp/config/urls.py mounts the tracking endpoints, as the resolver writes the route.
MOUNT = "mlflow/<int:project_id>/"
# urls.py's last pattern: every call rlab does not implement.
NOT_IMPLEMENTED = "(?P<path>(?:ajax-)?api/.*)$"


def anything(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    return True


def in_project(check: Check) -> Check:
    def checked(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
        return kwargs.get("project_id") == scope.project_id and check(request, kwargs, scope)

    return checked


def run_in_body(model: type[bodies.RunBody]) -> Check:
    def check(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
        return scope.is_run(read_body(request, model).run)

    return check


def own_models(scope: RunScope, model_ids: list[str]) -> bool:
    """Whether every one of the models is a logged model of the scope's run."""
    wanted = set(model_ids)
    return bool(wanted) and LoggedModel.objects.filter(
        pk__in=wanted, source_run_id=scope.run_id).count() == len(wanted)


def model_in_address(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    return own_models(scope, [str(kwargs.get("model_id", ""))])


def experiment_by_id(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    return scope.is_experiment(read_body(request, bodies.ExperimentById).experiment_id)


def experiment_by_name(request: HttpRequest, kwargs: Mapping[str, Any],
                       scope: RunScope) -> bool:
    """Any name: the view answers a run's token with its run's experiment, whatever the name
    (mlflow.set_experiment in a launched script finds the run's own)."""
    read_body(request, bodies.ExperimentByName)
    return True


def model_create(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    body = read_body(request, ModelCreate)
    return scope.is_experiment(body.experiment_id) and scope.is_run(body.source_run_id)


def run_outputs(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    body = read_body(request, RunOutputs)
    return scope.is_run(body.run) and own_models(scope, [m.model_id for m in body.models])


def own_location(location: str, scope: RunScope) -> bool:
    """An artifact location (<experiment id>/<run id>/artifacts/…, or a logged model's
    <experiment id>/models/<model id>/artifacts/…) of the scope's run."""
    match = LOCATION.fullmatch(location.strip("/"))
    if match is None or not scope.is_experiment(match["experiment"]):
        return False
    if match["model"] is not None:
        return own_models(scope, [match["model"]])
    return scope.is_run(match["run"])


def artifact_in_address(request: HttpRequest, kwargs: Mapping[str, Any],
                        scope: RunScope) -> bool:
    return own_location(str(kwargs.get("location", "")), scope)


def artifact_listed(request: HttpRequest, kwargs: Mapping[str, Any], scope: RunScope) -> bool:
    paths = request.GET.getlist("path")
    return len(paths) == 1 and own_location(paths[0], scope)


RUN_CALLS: dict[Route, Check] = {
    ("GET", "runs/get"): run_in_body(bodies.RunBody),
    ("POST", "runs/update"): run_in_body(bodies.RunUpdate),
    ("POST", "runs/log-metric"): run_in_body(bodies.LogMetric),
    ("POST", "runs/log-parameter"): run_in_body(bodies.LogPair),
    ("POST", "runs/set-tag"): run_in_body(bodies.LogPair),
    ("POST", "runs/log-batch"): run_in_body(bodies.LogBatch),
    ("POST", "runs/log-inputs"): run_in_body(bodies.LogInputs),
    ("GET", "metrics/get-history"): run_in_body(MetricHistory),
    ("POST", "runs/outputs"): run_outputs,
    ("GET", "experiments/get"): experiment_by_id,
    ("GET", "experiments/get-by-name"): experiment_by_name,
    ("POST", "logged-models"): model_create,
    ("GET", "logged-models/<str:model_id>"): model_in_address,
    ("PATCH", "logged-models/<str:model_id>"): model_in_address,
    ("PATCH", "logged-models/<str:model_id>/tags"): model_in_address,
    ("DELETE", "logged-models/<str:model_id>/tags/<path:tag_key>"): model_in_address,
    ("POST", "logged-models/<str:model_id>/params"): model_in_address,
}

MLFLOW_ROUTES: dict[Route, Check] = {
    **{(method, f"{MOUNT}{PREFIX}{call}"): in_project(check)
       for (method, call), check in RUN_CALLS.items()},
    ("PUT", f"{MOUNT}{ARTIFACTS}/<path:location>"): in_project(artifact_in_address),
    ("GET", f"{MOUNT}{ARTIFACTS}/<path:location>"): in_project(artifact_in_address),
    ("GET", f"{MOUNT}{ARTIFACTS}"): in_project(artifact_listed),
    # What rlab does not implement (runs/delete-tag, traces...) says so, as to anyone: the
    # answer names nothing and reads nothing.
    **{(method, f"{MOUNT}{NOT_IMPLEMENTED}"): in_project(anything)
       for method in ("GET", "POST", "PATCH", "DELETE")},
}
