"""Reading an artifact's bytes from the artifact store without ever holding the whole file: its
first bytes (for a preview), or its chunks one after another (for a download).

django-storages' S3File downloads a whole object to a temporary file before its first read, so
from an S3-compatible bucket the object's body is read as it arrives instead (a range request for
the first bytes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO

from asgiref.sync import sync_to_async
from django.core.files.storage import Storage

from webapp.artifacts.models import Artifact
from webapp.artifacts.storage import artifact_storage

# The bytes read from the store at a time while a download streams.
CHUNK_BYTES = 1024 * 1024


def _s3_object(storage: Storage, name: str):
    """The boto3 Object of `name` in an S3Storage, None for any other storage. The key is the
    one S3Storage itself reads (its location prefix added, the name cleaned)."""
    bucket = getattr(storage, "bucket", None)
    if bucket is None:
        return None
    from storages.utils import clean_name

    return bucket.Object(storage._normalize_name(clean_name(name)))


def artifact_open(artifact: Artifact, *, first: int | None = None) -> BinaryIO:
    """The artifact's bytes as a stream read as it goes (at most `first` bytes of them if
    given); the caller closes it. FileNotFoundError when the store has no such file."""
    storage = artifact_storage()
    s3_object = _s3_object(storage, artifact.storage_name)
    if s3_object is None:
        return storage.open(artifact.storage_name, "rb")
    from botocore.exceptions import ClientError

    ranged = {} if not first else {"Range": f"bytes=0-{first - 1}"}
    try:
        return s3_object.get(**ranged)["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(artifact.storage_name) from exc
        raise


def artifact_head(artifact: Artifact, limit: int) -> bytes:
    """The artifact's first `limit` bytes (all of it when it is shorter)."""
    with artifact_open(artifact, first=limit) as stream:
        chunks, left = [], limit
        while left > 0:
            chunk = stream.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    return b"".join(chunks)


async def artifact_chunks(stream: BinaryIO) -> AsyncIterator[bytes]:
    """An open artifact's bytes, CHUNK_BYTES at a time, closing it at the end. Asynchronous
    because under ASGI Django reads a synchronous iterator whole before it sends the first byte;
    each read runs in a thread of its own, away from the thread that serves database work."""
    read = sync_to_async(stream.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(stream.close, thread_sensitive=False)()
