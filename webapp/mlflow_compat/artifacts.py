"""MLflow's artifact proxy (`mlflow-artifacts`), as the mlflow client calls it for a run whose
artifact URI is `mlflow-artifacts:/<experiment id>/<run id>/artifacts` (or a logged model's,
`mlflow-artifacts:/<experiment id>/models/<model id>/artifacts`): upload (PUT), download (GET)
and list (GET ?path=) under /mlflow/<project id>/api/2.0/mlflow-artifacts/artifacts.

Reads need the viewer role, uploads the member role; a run or model outside the project, or of
an experiment rlab runs itself, does not exist here. Uploads are streamed to the store and
checked as they are read (webapp.artifacts.services.artifact_upload); downloads are streamed
back. Multipart and presigned uploads are not offered: /server-info does not announce them, so
the client sends every file through these endpoints."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from urllib.parse import quote

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from webapp.artifacts import storage
from webapp.artifacts.models import Artifact, LoggedModel
from webapp.artifacts.paths import ArtifactPathError, artifact_path_check
from webapp.artifacts.services import ArtifactRefused, Owner, artifact_upload, owner_q
from webapp.experiments.models import LOGGED_BY_SCRIPTS
from webapp.mlflow_compat.auth import request_user
from webapp.mlflow_compat.endpoint import project_for
from webapp.mlflow_compat.errors import MlflowError, error_response
from webapp.mlflow_compat.views import row_id
from webapp.projects.models import Project
from webapp.runs.models import Run
from webapp.teams.models import Role

# What the client puts before a file's path: the artifact URI's path.
LOCATION = re.compile(r"(?P<experiment>[^/]+)/(?:models/(?P<model>[^/]+)|(?P<run>[^/]+))"
                      r"/artifacts(?:/(?P<path>.*))?", re.DOTALL)
LOCATION_HELP = ("Artifact paths here are <experiment id>/<run id>/artifacts/<path>, as the run's "
                 "artifact_uri says: log through the run (mlflow.log_artifact).")


def owner_and_path(project: Project, location: str) -> tuple[Owner, str]:
    """The run or logged model a location names, and the path under its artifacts ("" for its
    top); RESOURCE_DOES_NOT_EXIST for one outside the project's tracked and script
    experiments."""
    match = LOCATION.fullmatch(location)
    if match is None:
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"No artifacts at {location[:200]!r}. {LOCATION_HELP}")
    experiment_id = row_id(match["experiment"])
    tracked = {"experiment__project": project, "experiment__kind__in": LOGGED_BY_SCRIPTS,
               "experiment_id": experiment_id}
    owner: Owner | None
    if match["model"] is not None:
        owner = LoggedModel.objects.filter(pk=match["model"], **tracked).first()
        what = f"Logged model {match['model']}"
    else:
        pk = row_id(match["run"])
        owner = None if pk is None or experiment_id is None else Run.objects.filter(
            pk=pk, **tracked).first()
        what = f"Run with id={match['run']}"
    if owner is None:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"{what} not found in experiment {match['experiment']} of project "
                          f"{project.name}.")
    return owner, match["path"] or ""


def answer(request: HttpRequest, project_id: int, role: str,
           act: Callable[[Project], HttpResponse]) -> HttpResponse:
    """`act(project)` as the token's user with `role` in the project, every refusal in MLflow's
    words."""
    try:
        project = project_for(request_user(request), project_id, role)
        return act(project)
    except MlflowError as exc:
        return exc.response()
    except PermissionDenied as exc:
        return error_response("PERMISSION_DENIED", str(exc) or "Permission denied.")
    except (ArtifactPathError, ArtifactRefused) as exc:
        return error_response("INVALID_PARAMETER_VALUE", str(exc))


@csrf_exempt
def artifact_file(request: HttpRequest, project_id: int, location: str) -> HttpResponse:
    """PUT uploads a file (the body, as it is), GET downloads one."""
    if request.method == "PUT":
        return answer(request, project_id, Role.MEMBER,
                      lambda project: upload(request, project, location))
    if request.method == "GET":
        return answer(request, project_id, Role.VIEWER,
                      lambda project: download(project, location))
    response = error_response("BAD_REQUEST", "This endpoint takes GET or PUT.")
    response.status_code = 405
    response["Allow"] = "GET, PUT"
    return response


def declared_size(request: HttpRequest) -> int | None:
    value = request.headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def upload(request: HttpRequest, project: Project, location: str) -> HttpResponse:
    owner, path = owner_and_path(project, location)
    artifact_upload(owner=owner, path=path, stream=request, declared_size=declared_size(request),
                    content_type=request.headers.get("Content-Type", ""))
    return JsonResponse({})


def download(project: Project, location: str) -> HttpResponse:
    owner, path = owner_and_path(project, location)
    artifact = Artifact.objects.filter(owner_q(owner), path=artifact_path_check(path)).first()
    if artifact is None:
        if Artifact.objects.filter(owner_q(owner, path)).exists():
            raise MlflowError("INVALID_PARAMETER_VALUE",
                              f"Artifact path refers to a directory, not a file: {path!r}.")
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"No artifact at {path!r}.")
    try:
        stream = storage.file_open(artifact.storage_name)
    except FileNotFoundError:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"The file of artifact {path!r} is missing from the store.")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    response = StreamingHttpResponse(storage.file_chunks(stream), content_type=content_type)
    response["Content-Length"] = str(artifact.size)
    name = path.rpartition("/")[2]
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    # A file a script logged is served as data, never run as a page of this site.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


@csrf_exempt
def artifact_list(request: HttpRequest, project_id: int) -> HttpResponse:
    """GET ?path=<location>: the files and folders directly in a folder of the artifacts, as
    MLflow lists them (a file's own path lists nothing)."""
    if request.method != "GET":
        response = error_response("BAD_REQUEST", "This endpoint takes GET.")
        response.status_code = 405
        response["Allow"] = "GET"
        return response
    return answer(request, project_id, Role.VIEWER,
                  lambda project: listing(project, request.GET.get("path", "")))


def listing(project: Project, location: str) -> HttpResponse:
    owner, folder = owner_and_path(project, location.strip("/"))
    if folder:
        artifact_path_check(folder)
    start = len(folder) + 1 if folder else 0
    files: dict[str, dict] = {}
    for path, size in Artifact.objects.filter(owner_q(owner, folder)).values_list("path", "size"):
        name, slash, _ = path[start:].partition("/")
        if slash:
            files[name] = {"path": name, "is_dir": True}
        else:
            files[name] = {"path": name, "is_dir": False, "file_size": size}
    return JsonResponse({"files": [files[name] for name in sorted(files)]})
