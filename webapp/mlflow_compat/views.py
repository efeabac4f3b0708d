"""The tracking endpoints, answered as an MLflow tracking server answers the mlflow client:
GET parameters or a JSON body in, JSON out, MLflow's error JSON for anything refused.

Each acts as the token's user in the project of the tracking URI, with the web pages' rules: a
project the user cannot see is RESOURCE_DOES_NOT_EXIST (404), a viewer is PERMISSION_DENIED
(403) on every write. Only the project's tracked experiments and their runs are seen here, and
one by one a script experiment's runs, whose processes log into them (a run's own token reaches
only its run: webapp.mlflow_compat.run_scope): the experiments rlab trains itself take no data
from scripts."""

from __future__ import annotations

import logging

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from webapp.common.inputs import storable_text
from webapp.experiments.models import LOGGED_BY_SCRIPTS, Experiment, ExperimentKind
from webapp.mlflow_compat import bodies
from webapp.mlflow_compat.endpoint import endpoint
from webapp.mlflow_compat.entities import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    RUN_NAME_TAG,
    STATUS_FROM_MLFLOW,
    experiment_json,
    run_info_json,
    run_json,
    run_name,
)
from webapp.mlflow_compat.errors import MlflowError, error_response
from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user
from webapp.runs.ingestion import MetricSample, metrics_ingest
from webapp.runs.models import Run, RunStatus
from webapp.runs.tracking import (
    tracked_experiment_get_or_create,
    tracked_run_create,
    tracked_run_finish,
    tracked_run_heartbeat,
    tracked_run_log_inputs,
    tracked_run_log_params,
    tracked_run_rename,
    tracked_run_reopen,
    tracked_run_set_tags,
)
from webapp.teams.models import Role

logger = logging.getLogger(__name__)

# Set by rlab-client's MLflow plugin (rlab.mlflow_plugin) on the calls of a script that is
# exiting on an uncaught exception: the exception's type.
SCRIPT_EXCEPTION_HEADER = "X-Rlab-Script-Exception"


def row_id(value: str) -> int | None:
    """An id as MLflow sends it, a string of digits, as a primary key; None for anything else."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def tracked(experiment: Experiment) -> Experiment:
    if not experiment.is_logged_by_scripts:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"{experiment.name!r} is a {experiment.kind} experiment, launched "
                          "from rlab: it takes no runs from scripts. Log to another experiment "
                          "name.")
    return experiment


def experiment_with_id(project: Project, experiment_id: str) -> Experiment:
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        found = project.experiments.filter(name=DEFAULT_EXPERIMENT_NAME).first()
    else:
        pk = row_id(experiment_id)
        found = None if pk is None else project.experiments.filter(pk=pk).first()
    if found is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"No experiment with id {experiment_id} in project {project.name}.")
    return tracked(found)


def run_of(project: Project, body: bodies.RunBody) -> Run:
    """The tracked run, or script run, a request names."""
    if body.run is None:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          "Missing value for required parameter 'run_id'.")
    pk = row_id(body.run)
    runs = Run.objects.filter(experiment__project=project,
                              experiment__kind__in=LOGGED_BY_SCRIPTS)
    run = None if pk is None else runs.select_related("experiment", "launched_by").filter(
        pk=pk).first()
    if run is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"Run with id={body.run} not found in project {project.name}.")
    return run


def active_run_of(project: Project, body: bodies.RunBody) -> Run:
    """The run, which must still be running: an ended run's record is closed. A crashed run
    runs again: its script, silent for a while, is alive."""
    run = run_of(project, body)
    if run.status == RunStatus.CRASHED:
        tracked_run_heartbeat(run_id=run.pk)
        run.refresh_from_db()
    if run.is_terminal:
        raise MlflowError("RESOURCE_CONFLICT",
                          f"Run {run_name(run)} (id {run.pk}) has ended ({run.status}): it "
                          "takes no more data. Start a new run.")
    return run


def rename(run: Run, name: str | None) -> None:
    if name and name not in (run.name, run_name(run)):
        tracked_run_rename(run_id=run.pk, name=name)
        run.refresh_from_db(fields=["name"])


def string_pairs(pairs: list[bodies.Pair], what: str) -> dict[str, str]:
    """MLflow's [{"key": ..., "value": ...}] as a dict; a key sent twice must keep its value."""
    found: dict[str, str] = {}
    for pair in pairs:
        if found.get(pair.key, pair.value) != pair.value:
            raise MlflowError("INVALID_PARAMETER_VALUE",
                              f"The {what} {pair.key!r} was sent twice with different values.")
        found[pair.key] = pair.value
    return found


def metric_sample(metric: bodies.Metric) -> MetricSample:
    return MetricSample(key=metric.key, step=metric.step or 0, value=metric.value,
                        wall_time=metric.timestamp)


def set_tags(run: Run, tags: dict[str, str]) -> None:
    rename(run, tags.pop(RUN_NAME_TAG, None))
    if tags:
        tracked_run_set_tags(run_id=run.pk, tags=tags)


@endpoint("GET", Role.VIEWER, bodies.ExperimentByName, run_token=True)
def experiment_get_by_name(*, project: Project, user, body: bodies.ExperimentByName,
                           run_token_run: Run | None) -> dict:
    """The project's experiment with that name. A run's own token (a script run's process) gets
    its run's experiment whatever the name: a launched run logs into its run, so a script's
    `mlflow.set_experiment(<its own name>)` (veRL's trainer.project_name) finds the experiment
    that run is in and starts no other."""
    if run_token_run is not None:
        return {"experiment": experiment_json(tracked(run_token_run.experiment))}
    name = body.experiment_name.strip()
    experiment = project.experiments.filter(name=name).first()
    if experiment is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"No experiment named {name!r} in project {project.name}.")
    return {"experiment": experiment_json(tracked(experiment))}


@endpoint("GET", Role.VIEWER, bodies.ExperimentById)
def experiment_get(*, project: Project, user, body: bodies.ExperimentById) -> dict:
    return {"experiment": experiment_json(experiment_with_id(project, body.experiment_id))}


@endpoint("POST", Role.MEMBER, bodies.ExperimentCreate)
def experiment_create(*, project: Project, user, body: bodies.ExperimentCreate) -> dict:
    """A new tracked experiment. A name already taken is RESOURCE_ALREADY_EXISTS, as in MLflow:
    mlflow.set_experiment, racing another process to create it, then looks it up."""
    name = body.name.strip()
    if project.experiments.filter(name=name).exists():
        raise MlflowError("RESOURCE_ALREADY_EXISTS",
                          f"Project {project.name} already has an experiment named {name!r}.")
    experiment = tracked_experiment_get_or_create(project=project, user=user, name=name)
    return {"experiment_id": str(experiment.pk)}


@endpoint("POST", Role.MEMBER, bodies.RunCreate)
def run_create(*, project: Project, user, body: bodies.RunCreate) -> dict:
    """A running run; MLflow's default experiment (id 0) is the project's Default experiment,
    made on first use."""
    if body.experiment_id == DEFAULT_EXPERIMENT_ID:
        experiment = tracked_experiment_get_or_create(project=project, user=user,
                                                      name=DEFAULT_EXPERIMENT_NAME)
    else:
        experiment = experiment_with_id(project, body.experiment_id)
    tags = string_pairs(body.tags, "tag")
    name = body.run_name or tags.get(RUN_NAME_TAG, "")
    tags.pop(RUN_NAME_TAG, None)
    run = tracked_run_create(experiment=experiment, user=user, name=name, tags=tags,
                             started_at=body.start_time)
    return {"run": run_json(run)}


@endpoint("GET", Role.VIEWER, bodies.RunBody)
def run_get(*, project: Project, user, body: bodies.RunBody) -> dict:
    return {"run": run_json(run_of(project, body))}


@endpoint("POST", Role.MEMBER, bodies.RunUpdate, headers=True)
def run_update(*, project: Project, user, body: bodies.RunUpdate, headers) -> dict:
    """End a run (FINISHED, FAILED, KILLED), or run it again (RUNNING: a script resuming it with
    start_run(run_id=...), whatever its end). An ended run's end stays, but for a crashed run's,
    which its script, reaching the server again, may still set.

    MLflow's client ends a script's run as FINISHED even when the script dies of an uncaught
    exception (an atexit hook): rlab-client's request-header plugin then names the exception in
    SCRIPT_EXCEPTION_HEADER, and the run ends as failed.

    A script run's status is its worker's (the process's exit code): the end its process
    reports (transformers' MLflowCallback ends the run when training ends, before the process
    exits) is accepted and logged, and changes nothing."""
    run = run_of(project, body)
    rename(run, body.run_name)
    if body.status is None:
        return {"run_info": run_info_json(run)}
    if body.status not in STATUS_FROM_MLFLOW:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"Unknown run status {body.status!r}: one of "
                          f"{', '.join(STATUS_FROM_MLFLOW)}.")
    if run.is_script:
        logger.info("script run %s: its process reported the status %s through MLflow; left "
                    "to its worker, which ends the run by the process's exit code",
                    run.pk, body.status)
        return {"run_info": run_info_json(run)}
    wanted = STATUS_FROM_MLFLOW[body.status]
    error = ""
    exception = storable_text(headers.get(SCRIPT_EXCEPTION_HEADER, "").strip())[:200]
    if wanted == RunStatus.SUCCEEDED and exception:
        # ^C is a person stopping the script; anything else, the script dying.
        wanted = RunStatus.CANCELLED if exception == "KeyboardInterrupt" else RunStatus.FAILED
        error = (f"The script exited on an uncaught {exception}; MLflow's client reported the "
                 "run as finished.")
    if wanted == RunStatus.RUNNING:
        tracked_run_reopen(run_id=run.pk)
    elif not run.is_terminal or run.status == RunStatus.CRASHED:
        tracked_run_finish(run_id=run.pk, status=wanted, finished_at=body.end_time,
                           error_message=error)
    elif run.status != wanted:
        raise MlflowError("RESOURCE_CONFLICT",
                          f"Run {run_name(run)} (id {run.pk}) has ended ({run.status}): "
                          f"it cannot become {body.status}. Resume it (start_run(run_id=...)) "
                          "first, or start a new run.")
    run.refresh_from_db()
    return {"run_info": run_info_json(run)}


@endpoint("POST", Role.MEMBER, bodies.LogInputs)
def run_log_inputs(*, project: Project, user, body: bodies.LogInputs) -> dict:
    """Datasets as inputs of the run, kept as references (name, digest, source...). Models as
    inputs are not kept."""
    run = active_run_of(project, body)
    tracked_run_log_inputs(run_id=run.pk, datasets=[
        {"name": item.dataset.name, "digest": item.dataset.digest,
         "source_type": item.dataset.source_type, "source": item.dataset.source,
         "schema": item.dataset.schema_, "profile": item.dataset.profile,
         "tags": string_pairs(item.tags, "input tag")}
        for item in body.datasets])
    return {}


@endpoint("POST", Role.MEMBER, bodies.LogMetric)
def run_log_metric(*, project: Project, user, body: bodies.LogMetric) -> dict:
    run = active_run_of(project, body)
    metrics_ingest(run_id=run.pk, points=[metric_sample(body)])
    return {}


@endpoint("POST", Role.MEMBER, bodies.LogPair)
def run_log_parameter(*, project: Project, user, body: bodies.LogPair) -> dict:
    run = active_run_of(project, body)
    tracked_run_log_params(run_id=run.pk, params={body.key: body.value})
    return {}


@endpoint("POST", Role.MEMBER, bodies.LogPair)
def run_set_tag(*, project: Project, user, body: bodies.LogPair) -> dict:
    run = active_run_of(project, body)
    set_tags(run, {body.key: body.value})
    return {}


@endpoint("POST", Role.MEMBER, bodies.LogBatch)
def run_log_batch(*, project: Project, user, body: bodies.LogBatch) -> dict:
    """Metrics, parameters and tags at once, all or none. The metrics go to the database in one
    COPY (metrics_ingest); MLflow's client sends up to 1,000 a call."""
    run = active_run_of(project, body)
    points = [metric_sample(metric) for metric in body.metrics]
    params = string_pairs(body.params, "parameter")
    tags = string_pairs(body.tags, "tag")
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
                          "takes experiments, runs, their parameters, tags, metrics, inputs and "
                          "artifacts, logged models and searches; not the model registry, "
                          "traces or prompts.")


TRACKED_RUNS_LISTED = 50


@login_required
def project_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The tracking URI itself, under which the mlflow client prints a run's link
    (`<uri>/#/experiments/<id>/runs/<id>`, the MLflow UI's address of the run). The fragment
    never reaches the server: static/mlflow_link.js reads it and opens the run's page (or the
    experiment's); without JavaScript the page lists the project's tracked runs, newest first."""
    project = get_project_for_user(request.user, project_id)
    experiments = Experiment.objects.filter(project=project, kind=ExperimentKind.TRACKED)
    default = experiments.filter(name=DEFAULT_EXPERIMENT_NAME).first()
    runs = (Run.objects.filter(experiment__in=experiments).select_related("experiment")
            .order_by("-created_at", "-pk")[:TRACKED_RUNS_LISTED])
    return render(request, "mlflow_compat/project_page.html", {
        "project": project, "runs": runs, "listed": TRACKED_RUNS_LISTED,
        "default_experiment": default})
