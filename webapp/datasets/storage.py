"""The dataset store on disk, under settings.RLAB_DATASET_DIR:

    blobs/ab/abcdef…   file contents, named by their sha256: identical bytes are stored once
    staging/<token>    an upload between its parse and its confirmation, named by a random token

Files are written a piece at a time, never held whole in memory, under a temporary name in the
same file system, and renamed into place, so a reader never sees half a file. Blobs have no
extension and are never served by a web server: the only way out is the download view, as an
attachment.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

_TOKEN = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".incoming-"
_CHUNK = 1024 * 1024


def root() -> Path:
    return Path(settings.RLAB_DATASET_DIR)


def blob_path(sha256: str) -> Path:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 digest: {sha256!r}")
    return root() / "blobs" / sha256[:2] / sha256


class BlobWriter:
    """A blob written a piece at a time, hashed as it is written, under a temporary name.
    `commit` names it by its sha256 and moves it into place, unless that content is stored
    already; a writer left (`with`) without a commit removes what it wrote."""

    def __init__(self) -> None:
        folder = root() / "blobs"
        folder.mkdir(parents=True, exist_ok=True)
        fd, self._temp = tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX)
        self._file = os.fdopen(fd, "wb", buffering=_CHUNK)
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self._file.close()
            Path(self._temp).unlink(missing_ok=True)

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def commit(self) -> tuple[str, bool]:
        """The blob's sha256, and whether this writer stored it (False: it was there)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._done = True
        sha256 = self._hash.hexdigest()
        path = blob_path(sha256)
        if path.exists():
            Path(self._temp).unlink(missing_ok=True)
            return sha256, False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self._temp, 0o444)  # content-addressed blobs never change
            os.replace(self._temp, path)
        except BaseException:
            Path(self._temp).unlink(missing_ok=True)
            raise
        return sha256, True


def blob_put_file(file: BinaryIO) -> tuple[str, bool]:
    """Store the rest of `file` once; its sha256, and whether this call wrote the file."""
    with BlobWriter() as blob:
        while chunk := file.read(_CHUNK):
            blob.write(chunk)
        return blob.commit()


def blob_remove(sha256: str) -> None:
    blob_path(sha256).unlink(missing_ok=True)


LOCK_FILE = ".blobs.lock"


@contextmanager
def blobs_lock(*, exclusive: bool) -> Iterator[None]:
    """The store's lock, across processes. A dataset holds it shared from storing its blobs
    until its row is committed; whoever removes a blob holds it exclusive from checking that no
    row references the blob until the blob is gone. So an upload of the same bytes as a dataset
    being deleted never finds its blob removed under it."""
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def staged_put(file: BinaryIO) -> str:
    """Keep an upload (the rest of `file`) until it is confirmed or discarded; the token that
    names it."""
    token = secrets.token_hex(16)
    _write_atomically(_staged_path(token), iter(partial(file.read, _CHUNK), b""), mode=0o600)
    return token


def staged_open(token: str) -> BinaryIO | None:
    """The staged upload, open for reading, or None if the token is malformed or the upload is
    gone."""
    if not _TOKEN.fullmatch(token):
        return None
    try:
        return _staged_path(token).open("rb")
    except FileNotFoundError:
        return None


def staged_remove(token: str) -> None:
    if _TOKEN.fullmatch(token):
        _staged_path(token).unlink(missing_ok=True)


def staging_sweep(*, older_than_s: float) -> int:
    """Remove staged uploads nobody confirmed or discarded (a closed tab); how many."""
    folder = root() / "staging"
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # swept by another process at the same time
    return removed


def _staged_path(token: str) -> Path:
    return root() / "staging" / token


def _write_atomically(path: Path, chunks: Iterable[bytes], *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
