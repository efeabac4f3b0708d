"""Artifact paths as a script names them: relative, with forward slashes, every segment a real
name. What could leave the owner's folder (`..`, an absolute path, a backslash a Windows reader
takes for a separator, NUL) or make two names for one file (empty or `.` segments) is refused."""

from __future__ import annotations

from webapp.artifacts.models import ARTIFACT_PATH_MAX_LENGTH

# The longest file name most file systems and S3 keys take, in UTF-8 bytes.
SEGMENT_MAX_BYTES = 255


class ArtifactPathError(ValueError):
    """A path that is not a storable artifact path; the message says why."""


def artifact_path_problem(path: str) -> str | None:
    """Why `path` cannot name an artifact; None if it can."""
    if not path:
        return "the path is empty"
    if len(path) > ARTIFACT_PATH_MAX_LENGTH:
        return f"the path is longer than {ARTIFACT_PATH_MAX_LENGTH} characters"
    if "\x00" in path:
        return "the path holds a NUL character"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "the path holds a control character"
    if "\\" in path:
        return "the path holds a backslash: separate folders with /"
    if path.startswith("/"):
        return "the path is absolute: name it relative to the run's artifacts"
    for segment in path.split("/"):
        if segment == "":
            return "the path has an empty segment (// or a trailing /)"
        if segment in (".", ".."):
            return f"the path has a {segment!r} segment"
        if len(segment.encode("utf-8")) > SEGMENT_MAX_BYTES:
            return f"a segment of the path is longer than {SEGMENT_MAX_BYTES} bytes"
    return None


def artifact_path_check(path: str) -> str:
    """`path`, if it can name an artifact; ArtifactPathError saying why not otherwise."""
    problem = artifact_path_problem(path)
    if problem:
        raise ArtifactPathError(f"Invalid artifact path {path[:200]!r}: {problem}.")
    return path


def parent_folders(path: str) -> list[str]:
    """The folders holding `path`, outermost first: "a/b/c.txt" → ["a", "a/b"]."""
    segments = path.split("/")[:-1]
    return ["/".join(segments[:i]) for i in range(1, len(segments) + 1)]
