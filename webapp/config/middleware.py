"""MalformedInputMiddleware: the address, the cookies and the form of every request are checked
against what rlab stores (webapp.common.inputs) before any view or database query sees them.
UnusableTokenMiddleware: a request carrying a token rlab does not accept is a 401 that says so,
and one carrying a run's own token reaches only that run (a 404 elsewhere)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotFound,
    JsonResponse,
)
from django.utils.deprecation import MiddlewareMixin
from django.utils.html import format_html

from webapp.api.auth import REFUSAL
from webapp.api.run_scope import API_ROUTES, scope_allows, scope_refusal_text
from webapp.api.tokens import request_token, request_token_user
from webapp.common.inputs import text_problem
from webapp.mlflow_compat.auth import sent_token, token_refusal
from webapp.mlflow_compat.errors import MlflowError, error_response
from webapp.mlflow_compat.run_scope import MLFLOW_ROUTES

# Where the JSON endpoints are mounted (webapp/config/urls.py): their refusals are JSON, each in
# its own family's words, so that their clients can read them.
API_PREFIX = "/api/"
MLFLOW_PREFIX = "/mlflow/"
MLFLOW_ENDPOINT = re.compile(r"^/mlflow/\d+/(?:ajax-)?api/")

PAGE = ("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Bad request · rlab"
        "</title><h1>Bad request</h1><p>{}</p><p><a href=\"/\">Back to your projects</a></p>"
        "</html>")


class MalformedInputMiddleware(MiddlewareMixin):
    """A 400 naming the part of the request that holds a NUL, a lone surrogate, or a
    percent-escape that is not UTF-8: in the address (`/prompts/%00/`), the query string
    (`?prompt_id=%00`), a cookie (the session's is looked up in the database) or a URL-encoded
    form. A multipart form's fields are left to the forms that read them (Django's form fields
    refuse NUL), so that uploads stream as their views decide."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        problem = request_problem(request)
        return None if problem is None else refusal(request, problem)


def request_problem(request: HttpRequest) -> str | None:
    """What is wrong with the request's address, cookies or form, in a sentence; None when
    nothing is."""
    raw_path = _raw_path(request)
    if raw_path is not None and not _decodes(raw_path):
        return "The address has a percent-escape that is not UTF-8: encode it as UTF-8."
    problem = text_problem(request.path_info)
    if problem is not None:
        return f"The address {problem}: remove it."
    if not _decodes(unquote_to_bytes(request.META.get("QUERY_STRING", ""))):
        return "The query string has a percent-escape that is not UTF-8: encode it as UTF-8."
    problem = _fields_problem(request.GET, "query parameter")
    if problem is not None:
        return problem
    for name, value in request.COOKIES.items():  # a quoted cookie may write a NUL as \000
        problem = text_problem(name) or text_problem(value)
        if problem is not None:
            return f"The cookie {name!r} {problem}: clear this site's cookies."
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        try:
            if not _decodes(unquote_to_bytes(request.body)):
                return "The form has a percent-escape that is not UTF-8: encode it as UTF-8."
            return _fields_problem(request.POST, "form field")
        except (RequestDataTooBig, TooManyFieldsSent):
            return None  # the view reading the form answers these
    return None


def _raw_path(request: HttpRequest) -> bytes | None:
    """The path's bytes as the client sent them, percent-escapes decoded, from the ASGI server;
    None elsewhere: under WSGI, Django writes bytes that are not UTF-8 back as escapes."""
    scope = getattr(request, "scope", None)
    return unquote_to_bytes(scope["raw_path"]) if scope and scope.get("raw_path") else None


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fields_problem(fields, what: str) -> str | None:
    for name, values in fields.lists():
        problem = text_problem(name)
        if problem is not None:
            return f"A {what} name {problem}: remove it."
        for value in values:
            problem = text_problem(value)
            if problem is not None:
                return f"The {what} {name!r} {problem}: remove it."
    return None


def refusal(request: HttpRequest, problem: str) -> HttpResponse:
    if request.path_info.startswith(MLFLOW_PREFIX):
        return error_response("INVALID_PARAMETER_VALUE", problem)
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": problem}, status=400)
    return HttpResponseBadRequest(format_html(PAGE, problem))


class UnusableTokenMiddleware(MiddlewareMixin):
    """A 401 "invalid or revoked token" for a request whose `Authorization` header carries a
    token that rlab does not accept (mistyped, revoked, its user deactivated), on every path
    and before Django's CSRF check, which would otherwise refuse a script's write with a
    message meant for browsers. Judged: a bearer token sent to the REST API or the tracking
    endpoints, the password of basic auth sent to the tracking endpoints (the mlflow client's
    other way), and anywhere a bearer token shaped as rlab's (`rlab_…`); so the credentials of
    a proxy in front of the pages pass. A token that is accepted is left to the endpoint, which
    reuses this lookup (request_token_user): the pages take no token.

    A run's own token (webapp.api.run_tokens) is also held to its run here, in front of every
    view whatever the path: the routes webapp.api.run_scope and webapp.mlflow_compat.run_scope
    allow, for that run; anything else is a 404 in the words of the path's family (a page
    included: no page takes a token)."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        path = request.path_info
        token = sent_token(request)
        if token is None:
            return None
        endpoint = path.startswith(API_PREFIX) or MLFLOW_ENDPOINT.match(path) is not None
        if request.headers["Authorization"][:7].lower() == "bearer ":
            judged = endpoint or token.startswith("rlab_")
        else:
            judged = endpoint and path.startswith(MLFLOW_PREFIX)
        if not judged or request_token_user(request, token) is not None:
            return None
        if path.startswith(MLFLOW_PREFIX):
            return error_response("UNAUTHENTICATED", token_refusal())
        response = JsonResponse({"detail": REFUSAL}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="rlab"'
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs,
                     ) -> HttpResponse | None:
        token = sent_token(request)
        row = request_token(request, token) if token else None
        if row is None or row.run_id is None:
            return None
        try:
            if scope_allows(request, row, RUN_TOKEN_ROUTES):
                return None
        except MlflowError as exc:  # a tracking body that cannot be read: as the view says
            return exc.response()
        text = scope_refusal_text(row)
        if request.path_info.startswith(MLFLOW_PREFIX):
            return error_response("RESOURCE_DOES_NOT_EXIST", text)
        if request.path_info.startswith(API_PREFIX):
            return JsonResponse({"detail": text}, status=404)
        return HttpResponseNotFound(format_html(NOT_FOUND_PAGE, text))


# Every route a run's own token may take, REST and tracking; any other is refused.
RUN_TOKEN_ROUTES = {**API_ROUTES, **MLFLOW_ROUTES}
NOT_FOUND_PAGE = ("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Not found · rlab"
                  "</title><h1>Not found</h1><p>{}</p></html>")
