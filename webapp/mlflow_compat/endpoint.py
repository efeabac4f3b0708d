"""How every tracking endpoint speaks: the method, the token, the user's role in the project of
the tracking URI, the body (GET parameters or JSON), and every refusal in MLflow's words."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from webapp.mlflow_compat.auth import request_user
from webapp.mlflow_compat.errors import MlflowError, error_response
from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user

Body = dict[str, Any]
Handler = Callable[..., dict]


def endpoint(method: str, role: str) -> Callable[[Handler], Callable[..., HttpResponse]]:
    """A view around `handler(project=, user=, body=) -> dict`: checks the method, the token
    and the user's role in the project, reads the body, and turns every refusal into MLflow's
    error JSON."""

    def decorate(handler: Handler) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(handler)
        def view(request: HttpRequest, project_id: int) -> HttpResponse:
            if request.method != method:
                response = error_response("BAD_REQUEST", f"This endpoint takes {method}.")
                response.status_code = 405
                return response
            try:
                user = request_user(request)
                project = project_for(user, project_id, role)
                return JsonResponse(handler(project=project, user=user, body=read_body(request)))
            except MlflowError as exc:
                return exc.response()
            except PermissionDenied as exc:
                return error_response("PERMISSION_DENIED", str(exc) or "Permission denied.")
            except ValidationError as exc:
                return error_response("INVALID_PARAMETER_VALUE", " ".join(exc.messages))

        return view

    return decorate


def project_for(user, project_id: int, role: str) -> Project:
    try:
        return get_project_for_user(user, project_id, role)
    except Http404:
        raise MlflowError("RESOURCE_DOES_NOT_EXIST",
                          f"Project {project_id} does not exist, or you are not in its team: "
                          "MLFLOW_TRACKING_URI ends with /mlflow/<project id>.")


def read_body(request: HttpRequest) -> Body:
    if request.method == "GET":
        return request.GET.dict()
    try:
        body = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        raise MlflowError("INVALID_PARAMETER_VALUE", "The request body is too large: log "
                                                     "fewer values per call.")
    except ValueError:
        raise MlflowError("BAD_REQUEST", "The request body is not JSON.")
    if not isinstance(body, dict):
        raise MlflowError("BAD_REQUEST", "The request body must be a JSON object.")
    return body


def required(body: Body, field: str) -> Any:
    if not isinstance(body, dict):
        raise MlflowError("BAD_REQUEST", f"Expected an object with '{field}', not {body!r}.")
    value = body.get(field)
    if value is None or value == "":
        raise MlflowError("INVALID_PARAMETER_VALUE",
                          f"Missing value for required parameter '{field}'.")
    return value
