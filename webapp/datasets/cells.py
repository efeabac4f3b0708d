"""What a cell of each file format becomes (text, or a `Structured` value shown but never used
as text), and which texts cannot be stored: NUL characters, unpaired surrogates. No Django here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_COLUMN_NAME = 500


@dataclass(frozen=True)
class Structured:
    """A cell holding a list, an object or binary data: shown in previews, never used as text."""

    kind: str  # "a list", "an object", "binary data"
    text: str

    def __str__(self) -> str:
        return self.text


Cell = str | Structured | None


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    if value.isascii():  # known without reading it: no surrogate
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate escape (\\ud800-\\udfff)"
    return None


def name_problem(name: str) -> str | None:
    """What makes `name` unusable as a column's name, if anything."""
    if problem := text_problem(name):
        return problem
    if not name.strip():
        return "is empty"
    if len(name) > MAX_COLUMN_NAME:
        return f"is longer than {MAX_COLUMN_NAME} characters"
    return None


def json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def json_cell(value: Any) -> Cell:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    kind = "a list" if isinstance(value, list) else "an object"
    return Structured(kind, json.dumps(value, ensure_ascii=False))


def parquet_cell(value: Any) -> Cell:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return Structured("binary data", f"<{len(value)} bytes>")
    if isinstance(value, (list, tuple, dict)):
        kind = "an object" if isinstance(value, dict) else "a list"
        return Structured(kind, json.dumps(value, ensure_ascii=False, default=str))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
