"""The REST API: `/api/`, its OpenAPI schema at `/api/openapi.json` and interactive docs at
`/api/docs`. Every endpoint acts as the token's (or the session's) user, with the same team
roles as the web pages: a project the user cannot see is 404, a role too low is 403.

Every error is JSON `{"detail": ...}`: a sentence, or for a 422 a list of `{loc, msg, type}`,
one per problem, whether pydantic found it in the body or a service refused the request. What a
body may hold is webapp.common.inputs' rule: a body that is not JSON is a 400 that says why, and
a value rlab would not store (a NUL, a lone surrogate, NaN) a 422 that names its field."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.datastructures import MultiValueDict
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from webapp.api.auth import API_AUTH, REFUSAL
from webapp.api.routers import (
    experiments,
    imports,
    jobs,
    logs,
    metrics,
    projects,
    queue,
    rollouts,
    runs,
    sweeps,
    tracking,
)
from webapp.common.inputs import MalformedJson, in_rlabs_words, json_parse

# A batch of 100,000 bad points would otherwise send 100,000 errors back.
MAX_ERRORS = 100


class InputParser(Parser):
    """Bodies read by webapp.common.inputs' rule: ninja answers the MalformedJson raised here
    with a 400 of its own, which `http_error` words with the reason. A parameter that takes one
    value and is given several is a 422, rather than one of them taken silently."""

    def parse_body(self, request: HttpRequest):
        return json_parse(request.body)

    def parse_querydict(self, data: MultiValueDict, list_fields: list[str],
                        request: HttpRequest) -> dict:
        source = "query" if data is request.GET else "form"
        repeated = [{"loc": [source, name], "type": "repeated",
                     "msg": f"Given {len(data.getlist(name))} times: give it once."}
                    for name in data if name not in list_fields and len(data.getlist(name)) > 1]
        if repeated:
            raise ValidationError(repeated)
        return super().parse_querydict(data, list_fields, request)


api = NinjaAPI(title="rlab API", version="1", auth=API_AUTH, urls_namespace="api",
               parser=InputParser(),
               description="Projects, experiments, runs, metrics, rollouts and checkpoints. "
                           "Authenticate with `Authorization: Bearer rlab_…`: create a token "
                           "on the API tokens page.")

for module in (projects, experiments, runs, logs, tracking, metrics, rollouts, imports,
               queue, sweeps, jobs):
    api.add_router("", module.router)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    cause = exc.__cause__
    detail = str(cause) if isinstance(cause, MalformedJson) else str(exc)
    return api.create_response(request, {"detail": detail}, status=exc.status_code)


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(request, {"detail": REFUSAL}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="rlab"'
    return response


@api.exception_handler(PermissionDenied)
def permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc) or "Forbidden."}, status=403)


@api.exception_handler(RequestDataTooBig)
def body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 2**20
    return api.create_response(
        request, {"detail": f"The body is over {limit:.1f} MiB: send smaller batches."},
        status=413)


@api.exception_handler(DjangoValidationError)
def service_refused(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    """A service's ValidationError: the request is well formed, but cannot be done as asked."""
    errors = [{"loc": ["body"], "msg": message, "type": "value_error"}
              for message in exc.messages]
    return api.create_response(request, {"detail": errors}, status=422)


@api.exception_handler(ValidationError)
def invalid_request(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [in_rlabs_words(error) for error in exc.errors[:MAX_ERRORS]]
    if len(exc.errors) > MAX_ERRORS:
        errors.append({"loc": ["body"], "type": "too_many_errors",
                       "msg": f"…and {len(exc.errors) - MAX_ERRORS:,} more errors."})
    return api.create_response(request, {"detail": errors}, status=422)
