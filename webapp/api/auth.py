"""How API requests authenticate: a bearer token (webapp.api.tokens), or the browser's session
for the interactive docs, whose writes need Django's CSRF token.

A request that sends an Authorization header is judged by it alone: a bad, revoked or missing
token is a 401 (api.py's `unauthenticated`, and webapp.config.middleware before any view), never
a CSRF refusal meant for a browser."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer

from webapp.api.tokens import INVALID_TOKEN, request_token_user

REFUSAL = (f"{INVALID_TOKEN}: send `Authorization: Bearer rlab_…` with an active token from the "
           "API tokens page.")


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        user = request_token_user(request, token)
        if user is not None:
            request.user = user  # the views read request.user, whichever way it signed in
        return user


class SessionAuth(APIKeyCookie):
    """The signed-in browser's session (the docs' "Try it out"); its CSRF check runs only for
    such a session, so that a script without one is told about its token instead."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request: HttpRequest):
        if "Authorization" in request.headers or not request.user.is_authenticated:
            return None
        return super().__call__(request)  # APIKeyCookie: the CSRF check on writes

    def authenticate(self, request: HttpRequest, key: str | None):
        return request.user


API_AUTH = [TokenAuth(), SessionAuth()]
