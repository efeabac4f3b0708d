"""Artifact paths (webapp.artifacts.paths): relative, slash-separated, every segment a name."""

from __future__ import annotations

import pytest

from webapp.artifacts.paths import ArtifactPathError, artifact_path_check, parent_folders


@pytest.mark.parametrize("path", [
    "model.safetensors", "checkpoint-10/config.json", "eval/ü b (1).json", "a/.hidden",
    "x" * 255, "/".join(["d"] * 400),
])
def test_relative_paths_of_names_are_kept(path):
    assert artifact_path_check(path) == path


@pytest.mark.parametrize("path, why", [
    ("", "empty"), ("../up", "'..' segment"), ("a/../../b", "'..' segment"),
    ("a/./b", "'.' segment"), ("/etc/passwd", "absolute"), ("a//b", "empty segment"),
    ("a/", "empty segment"), ("a\\b", "backslash"), ("..\\x", "backslash"),
    ("nul\x00.txt", "NUL"), ("bell\x07", "control character"), ("x" * 256, "255 bytes"),
    ("é" * 128, "255 bytes"), ("d/" * 500 + "x", "1000 characters"),
])
def test_paths_that_could_leave_the_folder_or_name_a_file_twice_are_refused(path, why):
    with pytest.raises(ArtifactPathError, match="Invalid artifact path") as raised:
        artifact_path_check(path)
    assert why in str(raised.value)


def test_parent_folders_are_listed_outermost_first():
    assert parent_folders("a/b/c.txt") == ["a", "a/b"]
    assert parent_folders("top.txt") == []
