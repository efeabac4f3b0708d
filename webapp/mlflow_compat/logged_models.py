"""MLflow 3's logged models, as the client calls them for mlflow.<flavor>.log_model (and so for
transformers' MLflowCallback, which logs each checkpoint with mlflow.pyfunc.log_model): create,
get, finalise, search, tags, parameters, delete, and the run's outputs. A model's files go
through the artifact proxy to `mlflow-artifacts:/<experiment id>/models/<model id>/artifacts`.

A model belongs to a tracked experiment of the project; one elsewhere does not exist here."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import Field

from webapp.artifacts.models import LoggedModel
from webapp.artifacts.services import (
    logged_model_create,
    logged_model_delete,
    logged_model_output,
    logged_model_update,
)
from webapp.common.inputs import Text
from webapp.experiments.models import LOGGED_BY_SCRIPTS
from webapp.mlflow_compat import bodies
from webapp.mlflow_compat.endpoint import endpoint
from webapp.mlflow_compat.entities import artifact_uri, ms
from webapp.mlflow_compat.errors import MlflowError
from webapp.mlflow_compat.model_search import STATUS_FROM_MLFLOW, STATUS_TO_MLFLOW, models_search
from webapp.mlflow_compat.search import searched
from webapp.mlflow_compat.views import experiment_with_id, row_id, string_pairs
from webapp.projects.models import Project
from webapp.runs.models import Run
from webapp.teams.models import Role

# Search results per page, when the client asks for none, and at most.
PAGE_DEFAULT = 100
PAGE_MAX = 1000
ORDER_FIELDS = {"creation_timestamp": "created_at", "creation_time": "created_at",
                "last_updated_timestamp": "updated_at", "name": "name"}


class ModelCreate(bodies.Body):
    experiment_id: bodies.Required
    name: Text | None = None
    model_type: Text = ""
    source_run_id: Text | None = None
    params: list[bodies.Pair] = Field(default_factory=list)
    tags: list[bodies.Pair] = Field(default_factory=list)


class ModelFinalize(bodies.Body):
    status: bodies.Required


class ModelTags(bodies.Body):
    tags: list[bodies.Pair] = Field(default_factory=list)


class ModelParams(bodies.Body):
    params: list[bodies.Pair] = Field(default_factory=list)


class OrderBy(bodies.Body):
    field_name: bodies.Required
    ascending: bool = True


class ModelSearch(bodies.Body):
    experiment_ids: list[Text] = Field(default_factory=list)
    filter: Text = ""
    max_results: int = Field(default=PAGE_DEFAULT, ge=1, le=PAGE_MAX)
    order_by: list[OrderBy] = Field(default_factory=list)
    page_token: Text | None = None


class ModelOutput(bodies.Body):
    model_id: bodies.Required
    step: bodies.Step = 0


class RunOutputs(bodies.RunBody):
    models: list[ModelOutput] = Field(default_factory=list)


def logged_model_json(model: LoggedModel) -> dict:
    info = {"model_id": model.pk, "experiment_id": str(model.experiment_id), "name": model.name,
            "creation_timestamp_ms": ms(model.created_at),
            "last_updated_timestamp_ms": ms(model.updated_at),
            "artifact_uri": artifact_uri(experiment_id=model.experiment_id, model_id=model.pk),
            "status": STATUS_TO_MLFLOW[model.status], "model_type": model.model_type,
            "tags": [{"key": key, "value": value} for key, value in model.tags.items()]}
    if model.source_run_id is not None:
        info["source_run_id"] = str(model.source_run_id)
    return {"info": info,
            "data": {"params": [{"key": key, "value": value}
                                for key, value in model.params.items()]}}


def project_models(project: Project):
    return LoggedModel.objects.filter(experiment__project=project,
                                      experiment__kind__in=LOGGED_BY_SCRIPTS)


def model_of(project: Project, model_id: str) -> LoggedModel:
    model = project_models(project).filter(pk=model_id).first()
    if model is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"Logged model {model_id!r} not found in project {project.name}.")
    return model


def tracked_run(project: Project, run_id: str) -> Run:
    pk = row_id(run_id)
    run = None if pk is None else Run.objects.filter(
        pk=pk, experiment__project=project, experiment__kind__in=LOGGED_BY_SCRIPTS).first()
    if run is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"Run with id={run_id} not found in project {project.name}.")
    return run


@endpoint("POST", Role.MEMBER, ModelCreate)
def model_create(*, project: Project, user, body: ModelCreate) -> dict:
    experiment = experiment_with_id(project, body.experiment_id)
    source_run = tracked_run(project, body.source_run_id) if body.source_run_id else None
    model = logged_model_create(experiment=experiment, name=body.name, source_run=source_run,
                                model_type=body.model_type,
                                params=string_pairs(body.params, "parameter"),
                                tags=string_pairs(body.tags, "tag"))
    return {"model": logged_model_json(model)}


@endpoint("GET", Role.VIEWER, bodies.Body)
def model_get(*, project: Project, user, body: bodies.Body, model_id: str) -> dict:
    return {"model": logged_model_json(model_of(project, model_id))}


@endpoint("PATCH", Role.MEMBER, ModelFinalize)
def model_finalize(*, project: Project, user, body: ModelFinalize, model_id: str) -> dict:
    if body.status not in STATUS_FROM_MLFLOW:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"Unknown logged model status {body.status!r}: one of "
                          f"{', '.join(STATUS_FROM_MLFLOW)}.")
    model = logged_model_update(model=model_of(project, model_id),
                                status=STATUS_FROM_MLFLOW[body.status])
    return {"model": logged_model_json(model)}


@endpoint("DELETE", Role.MEMBER, bodies.Body)
def model_delete(*, project: Project, user, body: bodies.Body, model_id: str) -> dict:
    logged_model_delete(model=model_of(project, model_id))
    return {}


@endpoint("PATCH", Role.MEMBER, ModelTags)
def model_set_tags(*, project: Project, user, body: ModelTags, model_id: str) -> dict:
    logged_model_update(model=model_of(project, model_id), tags=string_pairs(body.tags, "tag"))
    return {}


@endpoint("DELETE", Role.MEMBER, bodies.Body)
def model_delete_tag(*, project: Project, user, body: bodies.Body, model_id: str,
                     tag_key: str) -> dict:
    logged_model_update(model=model_of(project, model_id), tags_removed=[tag_key])
    return {}


@endpoint("POST", Role.MEMBER, ModelParams)
def model_log_params(*, project: Project, user, body: ModelParams, model_id: str) -> dict:
    logged_model_update(model=model_of(project, model_id),
                        params=string_pairs(body.params, "parameter"))
    return {}


@endpoint("POST", Role.VIEWER, ModelSearch)
def model_search(*, project: Project, user, body: ModelSearch) -> dict:
    """The models of the experiments that pass the filter, newest first unless ordered
    otherwise, a page at a time."""
    experiments = [experiment_with_id(project, e).pk for e in body.experiment_ids]
    models = project_models(project).filter(experiment_id__in=experiments)
    models = searched(lambda: models_search(models, body.filter))
    order = []
    for item in body.order_by:
        if item.field_name not in ORDER_FIELDS:
            raise MlflowError("INVALID_PARAMETER_VALUE",
                              f"Logged models are ordered by {', '.join(ORDER_FIELDS)}, not "
                              f"{item.field_name!r}.")
        order.append(("" if item.ascending else "-") + ORDER_FIELDS[item.field_name])
    offset = row_id(body.page_token) if body.page_token else 0
    if offset is None:
        raise MlflowError("INVALID_PARAMETER_VALUE", "Invalid page_token.")
    page = list(models.order_by(*order, "-created_at", "pk")[offset:offset + body.max_results + 1])
    answer: dict = {"models": [logged_model_json(m) for m in page[:body.max_results]]}
    if len(page) > body.max_results:
        answer["next_page_token"] = str(offset + body.max_results)
    return answer


@endpoint("POST", Role.MEMBER, RunOutputs)
def run_log_outputs(*, project: Project, user, body: RunOutputs) -> dict:
    """The models as outputs of the run: a model created without its run is now the run's."""
    if body.run is None:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          "Missing value for required parameter 'run_id'.")
    run = tracked_run(project, body.run)
    for output in body.models:
        logged_model_output(model=model_of(project, output.model_id), run=run)
    return {}


@csrf_exempt
def model_item(request: HttpRequest, project_id: int, model_id: str) -> HttpResponse:
    """logged-models/<id>: GET reads the model, PATCH finalises it, DELETE deletes it."""
    view = {"PATCH": model_finalize, "DELETE": model_delete}.get(request.method, model_get)
    return view(request, project_id, model_id=model_id)
