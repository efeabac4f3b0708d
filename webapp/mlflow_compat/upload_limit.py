"""A cap on the bodies of artifact uploads, in front of Django.

Django's ASGI handler reads a request's whole body into a temporary file before any view runs,
so an upload far past RLAB_ARTIFACT_MAX_FILE_BYTES would fill the disk before the view could
refuse it. This middleware hands Django at most one chunk past the limit (enough for the view
to refuse it in MLflow's words, webapp.artifacts.services.artifact_upload) and reads and
discards the rest, so the client still gets that answer rather than a reset connection."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

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
        limit = settings.RLAB_ARTIFACT_MAX_FILE_BYTES
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
