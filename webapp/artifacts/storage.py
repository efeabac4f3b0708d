"""The artifact store: Django's storage named "artifacts" (settings.STORAGES), a folder under
RLAB_VAR_DIR embedded, or an S3-compatible bucket (django-storages) when RLAB_ARTIFACT_BUCKET is
set. Every file of a run or a logged model lives under its owner's prefix (Artifact.storage_name).

Files go in and out as streams, never whole in memory: django-storages' own S3File would read an
object whole before its first byte is served, so reads from a bucket use boto3's streaming body.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import BinaryIO

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

# Bytes per read and write when streaming a file.
CHUNK_BYTES = 1024 * 1024


def artifact_storage() -> Storage:
    return storages["artifacts"]


def is_local() -> bool:
    """Whether the store is a folder on this machine (embedded mode), which workers see too."""
    return isinstance(artifact_storage(), FileSystemStorage)


def local_path(name: str) -> Path:
    """Where a folder store keeps `name` (a file or a folder)."""
    return Path(artifact_storage().path(name))


def incoming_folder() -> Path:
    """Where uploads are spooled until they are complete and checked: inside the store's folder
    when it is one, so that putting a file in place is a rename."""
    folder = (local_path(".incoming") if is_local()
              else Path(settings.RLAB_ARTIFACT_DIR) / ".incoming")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _s3_object(name: str):
    storage = artifact_storage()
    # django-storages' own mapping of a name to a key under the configured prefix.
    return storage.bucket.Object(storage._normalize_name(name))


def file_put(name: str, spooled: Path) -> None:
    """Put the complete file `spooled` at `name`, replacing what was there; `spooled` is gone
    after. A folder store renames it into place, so a reader never sees half a file."""
    if is_local():
        target = local_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(spooled, target)
        return
    try:
        with open(spooled, "rb") as content:
            artifact_storage().save(name, File(content))
    finally:
        spooled.unlink(missing_ok=True)


def file_open(name: str, *, first: int | None = None) -> BinaryIO:
    """The stored file, to be read in chunks and closed by the caller; with `first`, a bucket
    is asked for that many bytes only (a preview of a huge file), a folder's file is opened
    whole. FileNotFoundError if it is not there."""
    if is_local():
        return open(local_path(name), "rb")
    from botocore.exceptions import ClientError

    ranged = {"Range": f"bytes=0-{first - 1}"} if first else {}
    try:
        return _s3_object(name).get(**ranged)["Body"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if ranged and code == "InvalidRange":  # an empty object has no byte 0
            return file_open(name)
        if code in ("NoSuchKey", "404"):
            raise FileNotFoundError(name) from exc
        raise


async def file_chunks(stream: BinaryIO) -> AsyncIterator[bytes]:
    """A file_open stream's bytes, read off the event loop a chunk at a time, then closed: what
    a download's StreamingHttpResponse takes. Django's ASGI handler would read a synchronous
    iterator (a FileResponse's) whole into memory before sending its first byte."""
    read = sync_to_async(stream.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK_BYTES):
            yield chunk
    finally:
        await sync_to_async(stream.close, thread_sensitive=False)()


def file_copy_to(name: str, target: Path) -> None:
    """Copy the stored file to `target` on this machine, replacing it whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with file_open(name) as source, open(partial, "wb") as out:
        while chunk := source.read(CHUNK_BYTES):
            out.write(chunk)
    os.replace(partial, target)


def prefixes_remove(prefixes: Iterable[str]) -> None:
    """Remove every file under each prefix ("runs/12", "models/m-…"): a folder store removes
    the folders, a bucket the objects whose keys start with the prefix and a slash."""
    for prefix in prefixes:
        if is_local():
            folder = local_path(prefix)
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
        else:
            storage = artifact_storage()
            key = storage._normalize_name(prefix).rstrip("/") + "/"
            storage.bucket.objects.filter(Prefix=key).delete()
