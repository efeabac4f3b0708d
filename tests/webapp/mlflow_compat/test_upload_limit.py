"""The cap on artifact upload bodies in front of Django (webapp.mlflow_compat.upload_limit): the
app is handed one chunk past the limit at most, the rest is read and discarded; without a
token that works, one chunk only."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from webapp.api.tokens import token_create
from webapp.mlflow_compat.upload_limit import ArtifactUploadLimit

CHUNK = b"c" * 1000


@pytest.fixture
def authorization(transactional_db, user) -> str:
    """A working token's header (the cap looks it up from a thread of its own: committed)."""
    return f"Bearer {token_create(user=user, name='uploads')[1]}"


def handed(path: str, chunks: int, limit: int, settings,
           authorization: str = "") -> tuple[int, int, bool]:
    """(bytes the app was handed, messages left unread, whether its body ended)."""
    settings.RLAB_ARTIFACT_MAX_FILE_BYTES = limit
    messages = [{"type": "http.request", "body": CHUNK, "more_body": i < chunks - 1}
                for i in range(chunks)]
    seen: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def app(scope, receive, send) -> None:
        while True:
            message = await receive()
            seen.append(message)
            if not message.get("more_body"):
                return

    scope = {"type": "http", "method": "PUT", "path": path,
             "headers": [(b"authorization", authorization.encode())] if authorization else []}
    # In a thread of its own: an earlier test (Playwright's) may leave this thread's loop running.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, ArtifactUploadLimit(app)(scope, receive, None)).result()
    return sum(len(m["body"]) for m in seen), len(messages), not seen[-1]["more_body"]


def test_an_upload_past_the_limit_is_cut_one_chunk_past_it(settings, authorization):
    path = "/mlflow/3/api/2.0/mlflow-artifacts/artifacts/1/2/artifacts/big.bin"
    assert handed(path, chunks=50, limit=2500, settings=settings,
                  authorization=authorization) == (3000, 0, True)


def test_an_upload_within_the_limit_and_other_requests_pass_whole(settings, authorization):
    path = "/mlflow/3/api/2.0/mlflow-artifacts/artifacts/1/2/artifacts/small.bin"
    assert handed(path, chunks=3, limit=5000, settings=settings,
                  authorization=authorization) == (3000, 0, True)
    assert handed("/api/datasets/upload", chunks=50, limit=2500, settings=settings) == (
        50000, 0, True)


@pytest.mark.parametrize("header", ["", "Bearer rlab_mistyped", "Basic bm90OmEtdG9rZW4="])
def test_an_upload_without_a_working_token_is_handed_one_chunk(settings, transactional_db,
                                                               header):
    path = "/mlflow/3/api/2.0/mlflow-artifacts/artifacts/1/2/artifacts/small.bin"
    assert handed(path, chunks=50, limit=5000, settings=settings, authorization=header) == (
        1000, 0, True)
