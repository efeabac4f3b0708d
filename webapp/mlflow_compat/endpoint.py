"""How every tracking endpoint speaks: the method, the token, the user's role in the project of
the tracking URI, the body (GET parameters or JSON, checked by its webapp.mlflow_compat.bodies
model), and every refusal in MLflow's words."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import pydantic
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from webapp.api.tokens import request_token
from webapp.common.inputs import MalformedJson, in_rlabs_words, json_parse, where
from webapp.mlflow_compat.auth import request_user, sent_token
from webapp.mlflow_compat.bodies import Body
from webapp.mlflow_compat.errors import MlflowError, error_response
from webapp.projects.models import Project
from webapp.projects.selectors import get_project_for_user

Handler = Callable[..., dict]
B = TypeVar("B", bound=Body)
# A log-batch of 1,000 bad metrics would otherwise answer with a 1,000-part message.
MAX_ERRORS = 10


def endpoint(method: str, role: str, body: type[Body], *, headers: bool = False,
             run_token: bool = False) -> Callable[[Handler], Callable[..., HttpResponse]]:
    """A view around `handler(project=, user=, body=, **url_kwargs) -> dict`: checks the
    method, the token and the user's role in the project, reads the body into a `body`, passes
    on what the URL names (a logged model's id), and turns every refusal into MLflow's error
    JSON. With `headers`, the handler also gets the request's headers; with `run_token`, the
    run a run's own token belongs to (`run_token_run`, None for a person's token)."""

    def decorate(handler: Handler) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(handler)
        def view(request: HttpRequest, project_id: int, **url_kwargs: str) -> HttpResponse:
            if request.method != method:
                response = error_response("BAD_REQUEST", f"This endpoint takes {method}.")
                response.status_code = 405
                response["Allow"] = method
                return response
            try:
                user = request_user(request)
                project = project_for(user, project_id, role)
                extra = {"headers": request.headers} if headers else {}
                if run_token:
                    row = request_token(request, sent_token(request) or "")
                    extra["run_token_run"] = row.run if row is not None else None
                return JsonResponse(handler(project=project, user=user,
                                            body=read_body(request, body), **extra,
                                            **url_kwargs))
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


def read_body(request: HttpRequest, model: type[B]) -> B:
    if request.method == "GET":
        # A repeated field (run_ids) comes once per item.
        data = {key: values[0] if len(values) == 1 else values
                for key, values in request.GET.lists()}
    else:
        try:
            data = json_parse(request.body or b"{}")
        except RequestDataTooBig:
            raise MlflowError("INVALID_PARAMETER_VALUE", "The request body is too large: log "
                                                         "fewer values per call.")
        except MalformedJson as exc:
            raise MlflowError("BAD_REQUEST", str(exc))
        if not isinstance(data, dict):
            raise MlflowError("BAD_REQUEST", "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise MlflowError("INVALID_PARAMETER_VALUE", invalid_fields(exc))


def invalid_fields(exc: pydantic.ValidationError) -> str:
    """pydantic's errors as MLflow words them, one sentence per field."""
    errors = [in_rlabs_words(error) for error in exc.errors(include_url=False)]
    sentences = [
        f"Missing value for required parameter '{where(error['loc'])}'."
        if error["type"] == "missing"
        else f"Invalid value for parameter '{where(error['loc'])}': {error['msg'].rstrip('.')}."
        for error in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        sentences.append(f"…and {len(errors) - MAX_ERRORS} more.")
    return " ".join(sentences)
