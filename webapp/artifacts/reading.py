"""An artifact's first bytes, for its page's preview: read from the artifact store without
holding the whole file (a bucket is asked for those bytes only)."""

from __future__ import annotations

from webapp.artifacts.models import Artifact
from webapp.artifacts.storage import file_open


def artifact_head(artifact: Artifact, limit: int) -> bytes:
    """The artifact's first `limit` bytes (all of it when it is shorter). FileNotFoundError when
    the store has no such file."""
    with file_open(artifact.storage_name, first=limit) as stream:
        chunks, left = [], limit
        while left > 0:
            chunk = stream.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    return b"".join(chunks)
