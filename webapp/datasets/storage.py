"""The dataset store on disk, under settings.RLAB_DATASET_DIR:

    blobs/ab/abcdef…   file contents, named by their sha256: identical bytes are stored once
    staging/<token>    an upload between its parse and its confirmation, named by a random token

Files are written under a temporary name in the same folder and renamed into place, so a reader
never sees half a file. Blobs have no extension and are never served by a web server: the only
way out is the download view, as an attachment.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import time
from pathlib import Path

from django.conf import settings

_TOKEN = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".incoming-"


def root() -> Path:
    return Path(settings.RLAB_DATASET_DIR)


def blob_path(sha256: str) -> Path:
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 digest: {sha256!r}")
    return root() / "blobs" / sha256[:2] / sha256


def blob_put(data: bytes) -> tuple[str, bool]:
    """Store `data` once; its sha256, and whether this call wrote the file."""
    sha256 = hashlib.sha256(data).hexdigest()
    path = blob_path(sha256)
    if path.exists():
        return sha256, False
    _write_atomically(path, data, mode=0o444)  # content-addressed blobs never change
    return sha256, True


def blob_remove(sha256: str) -> None:
    blob_path(sha256).unlink(missing_ok=True)


def staged_put(data: bytes) -> str:
    """Keep an upload until it is confirmed or discarded; the token that names it."""
    token = secrets.token_hex(16)
    _write_atomically(_staged_path(token), data, mode=0o600)
    return token


def staged_get(token: str) -> bytes | None:
    """The staged upload, or None if the token is malformed or the upload is gone."""
    if not _TOKEN.fullmatch(token):
        return None
    try:
        return _staged_path(token).read_bytes()
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


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
