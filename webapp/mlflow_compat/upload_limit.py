"""A cap on the bodies of artifact uploads, in front of Django.

Django's ASGI handler reads a request's whole body into a temporary file before any view runs,
so an upload far past RLAB_ARTIFACT_MAX_FILE_BYTES would fill the disk before the view could
refuse it. This middleware hands Django at most one chunk past the limit (enough for the view
to refuse it in MLflow's words, webapp.artifacts.services.artifact_upload) and reads and
discards the rest, so the client still gets that answer rather than a reset connection. A
request without a token rlab accepts is handed one chunk only: nobody fills the disk before
being told they are not signed in."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from webapp.api.tokens import token_user
from webapp.mlflow_compat.auth import authorization_token

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOADS = re.compile(r"/mlflow/[0-9]+/api/2\.0/mlflow-artifacts/artifacts/")


class ArtifactUploadLimit:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "PUT"
                and UPLOADS.match(scope["path"])):
            await self.app(scope, receive, send)
            return
        token = authorization_token(_header(scope, b"authorization"))
        signed_in = bool(token) and await sync_to_async(token_user)(token) is not None
        limit = settings.RLAB_ARTIFACT_MAX_FILE_BYTES if signed_in else 0
        passed = 0
        capped = False

        async def capped_receive() -> Message:
            nonlocal passed, capped
            message = await receive()
            if capped or message["type"] != "http.request":
                return message
            passed += len(message.get("body", b""))
            if passed > limit and message.get("more_body"):
                while (rest := await receive())["type"] == "http.request" and rest.get(
                        "more_body"):
                    pass  # discarded: the view refuses what it was handed already
                capped = True
                message = {**message, "more_body": False}
            return message

        await self.app(scope, capped_receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""
