"""Who a tracking request acts as: the user of the rlab API token it carries, sent as the
client sends MLFLOW_TRACKING_TOKEN (`Authorization: Bearer rlab_…`) or as the password of HTTP
basic auth (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD; any username). A browser's
session never counts: these endpoints take no CSRF token."""

from __future__ import annotations

import base64
import binascii

from django.http import HttpRequest

from webapp.api.tokens import INVALID_TOKEN, request_token_user
from webapp.mlflow_compat.errors import MlflowError

HOW_TO_AUTHENTICATE = ("Set MLFLOW_TRACKING_TOKEN to an rlab API token (create one on the API "
                       "tokens page of rlab).")


def sent_token(request: HttpRequest) -> str | None:
    return authorization_token(request.headers.get("Authorization", ""))


def authorization_token(authorization: str) -> str | None:
    """The token in an Authorization header's value: a bearer token, or basic auth's password."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def request_user(request: HttpRequest):
    """The token's user; MLflow's UNAUTHENTICATED error without a token that is valid now."""
    token = sent_token(request)
    if not token:
        raise MlflowError("UNAUTHENTICATED", f"{INVALID_TOKEN}: no API token was sent. "
                                             f"{HOW_TO_AUTHENTICATE}")
    user = request_token_user(request, token)
    if user is None:
        raise MlflowError("UNAUTHENTICATED", token_refusal())
    return user


def token_refusal() -> str:
    """What a request with a token that is not accepted is told, by the tracking endpoints and
    by every other path (webapp.config.middleware)."""
    return (f"{INVALID_TOKEN}: the API token is mistyped, revoked, or its user is deactivated. "
            f"{HOW_TO_AUTHENTICATE}")
