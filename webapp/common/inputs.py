"""What rlab stores, decided once: every edge (the REST API's schemas, the MLflow-compatible
endpoints, MalformedInputMiddleware for addresses and forms) refuses anything else with a 400 or
422 that names the field, and the trusted worker's writes are made to fit (the `storable_*`
functions) rather than fail.

- Text: any Unicode text but NUL (U+0000), which Postgres refuses in text, and lone surrogates
  (U+D800-U+DFFF on their own), which are not characters and cannot be written as UTF-8. Tabs, CR,
  LF and every other character are kept as sent.
- Numbers: finite wherever the value is a quantity that must be one: rewards, advantages, the
  per-token arrays, the REST API's metric values, and any number inside a JSON object (a
  rollout's `extra`, an experiment's config), which Postgres' jsonb cannot hold as NaN or
  Infinity. Metric values logged through MLflow may be NaN or ±Infinity, as MLflow's own server
  keeps them (its client logs a NaN loss as "NaN"); the metric column, a double, stores them.
- Steps: 64-bit signed integers, Postgres' bigint.
- Times: with a zone, within the years 1-9999 in UTC (what a datetime holds).
- JSON: nested at most MAX_JSON_DEPTH levels.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints
from pydantic_core import PydanticCustomError

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
# Deeper than any config or rollout extra needs, and far from Python's recursion limit, which
# the JSON encoder, the templates and Postgres' jsonb functions would otherwise reach.
MAX_JSON_DEPTH = 32

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

Path = tuple[str | int, ...]


def text_problem(value: str) -> str | None:
    """Why rlab will not store `value`, or None when it will.

    >>> text_problem("ok\\r\\n\\tfine"), text_problem("a\\x00b"), text_problem("\\ud83d")
    (None, 'contains a NUL character (U+0000)', 'contains a lone surrogate (U+D83D)')
    """
    if "\x00" in value:
        return "contains a NUL character (U+0000)"
    if not value.isascii():
        surrogate = _LONE_SURROGATE.search(value)
        if surrogate:
            return f"contains a lone surrogate (U+{ord(surrogate.group()):04X})"
    return None


def storable_text(value: str) -> str:
    """`value` with each character rlab cannot store replaced by U+FFFD: for text that a trusted
    writer produced (a model can generate a NUL), which is kept rather than refused.

    >>> storable_text("7\\x00 = \\ud83d!")
    '7\\ufffd = \\ufffd!'
    """
    if "\x00" not in value and (value.isascii() or not _LONE_SURROGATE.search(value)):
        return value
    return _UNSTORABLE.sub(REPLACEMENT, value)


def number_problem(value: float) -> str | None:
    """Why a number that must be finite is not, or None.

    >>> number_problem(0.5), number_problem(float("-inf"))
    (None, 'is -Infinity, not a finite number')
    """
    if math.isfinite(value):
        return None
    name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return f"is {name}, not a finite number"


def where(path: Path) -> str:
    """A path into a JSON value as it reads: `items[0].extra.score`."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" if i else str(part)
                   for i, part in enumerate(path))


def json_problem(value: Any) -> tuple[str, str] | None:
    """The first place in a parsed JSON value that rlab will not store, as (where, why), with
    `where` like `a.b[2]` (empty for the value itself); None when every part is storable.

    >>> json_problem({"scores": [0.5, float("nan")]})
    ('scores[1]', 'is NaN, not a finite number')
    >>> json_problem({"ok": [1, "two", None, True, {"three": 3.0}]}) is None
    True
    """
    found = _json_walk(value, (), 0)
    return None if found is None else (where(found[0]), found[1])


def _json_walk(value: Any, path: Path, depth: int) -> tuple[Path, str] | None:
    if isinstance(value, str):
        problem = text_problem(value)
    elif isinstance(value, float):
        problem = number_problem(value)
    elif isinstance(value, dict | list):
        if depth >= MAX_JSON_DEPTH:
            return path, f"is nested more than {MAX_JSON_DEPTH} levels deep"
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            key_problem = text_problem(key) if isinstance(key, str) else None
            if key_problem is not None:
                return path, f"has a key that {key_problem}"
            found = _json_walk(item, (*path, key), depth + 1)
            if found is not None:
                return found
        return None
    else:
        return None
    return None if problem is None else (path, problem)


def storable_json(value: Any) -> Any:
    """A parsed JSON value as rlab can store it, for a trusted writer: text made storable
    (storable_text), and NaN and ±Infinity, which jsonb cannot hold, as null. The value itself
    when it needs no change, found by one pass of the C encoder.

    >>> storable_json({"k\\x00": [1.0, float("nan"), "ok"]})
    {'k\\ufffd': [1.0, None, 'ok']}
    """
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
        encoded.encode("utf-8")  # refuses lone surrogates
    except ValueError:
        return _storable(value)
    return _storable(value) if "\\u0000" in encoded else value


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {storable_text(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


class MalformedJson(ValueError):
    """A body that is not JSON rlab reads; its message says what is wrong, and where."""


def json_parse(raw: bytes) -> Any:
    """A request body's JSON. NaN and ±Infinity are read as numbers, left for the fields'
    types to refuse or (MLflow's metric values) keep; MalformedJson for anything else that is
    not JSON, undecodable text, or nesting deeper than Python can parse."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise MalformedJson(f"The body is not JSON rlab reads: it is nested too deeply (at "
                            f"most {MAX_JSON_DEPTH} levels are kept).") from None
    except json.JSONDecodeError as exc:
        raise MalformedJson(f"The body is not JSON: {exc.msg} at line {exc.lineno}, column "
                            f"{exc.colno}.") from None
    except ValueError as exc:  # bytes that are not UTF-8, an integer of thousands of digits
        raise MalformedJson(f"The body is not JSON rlab reads: {exc}.") from None


# Pydantic types for the edges ------------------------------------------------------------------

def text_refusal(problem: str) -> str:
    """What a field's error says about text that text_problem refused."""
    return f"Text {problem}: rlab cannot store it; send valid Unicode text without NUL characters."


def in_rlabs_words(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error (a dict of `errors()`) with rlab's message when it is about Text: pydantic
    says only that the text does not match a pattern, or is not a string."""
    if (error["type"] == "string_pattern_mismatch"
            and (error.get("ctx") or {}).get("pattern") == TEXT_PATTERN):
        problem = "contains a NUL character (U+0000)"
    elif error["type"] == "string_unicode":
        problem = "contains a lone surrogate (U+D800-U+DFFF)"
    else:
        return error
    return {"loc": error["loc"], "msg": text_refusal(problem), "type": "text_unstorable"}


def _checked_json(value: Any) -> Any:
    found = json_problem(value)
    if found is not None:
        place, problem = found
        raise PydanticCustomError("json_unstorable", "{place} {problem}: rlab cannot store it.",
                                  {"place": place or "The value", "problem": problem})
    return value


TEXT_PATTERN = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
"""Text rlab stores. A pattern, not a validator of ours, so that it is checked in Rust, says so
in the JSON schema, and combines with other constraints (`Annotated[Text, Field(max_length=9)]`):
the pattern refuses a NUL, and matching it at all refuses a lone surrogate, which is no text in
Rust (pydantic's `string_unicode` error). `in_rlabs_words` rewords both errors."""

Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A number that must be finite; pydantic checks it in Rust, at no cost per value."""

Step = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
"""A training step: 0 or more, within Postgres' bigint."""

Moment = Annotated[AwareDatetime, Field(ge=datetime(1, 1, 2, tzinfo=UTC),
                                        le=datetime(9999, 12, 30, tzinfo=UTC))]
"""A time with its zone, a day inside the years 1-9999 once in UTC: Postgres would store 1 BC
(0001-01-01T00:00+05:00 is), which no datetime can hold, and reading the row back would fail."""

def query_step(query, name: str) -> int | None:
    """The step a query string gives as `name` (a QueryDict or any mapping of text), or None
    when it is absent or not a step: not a whole number, or outside 0 to Postgres' bigint."""
    try:
        step = int(query.get(name, ""))
    except ValueError:
        return None
    return step if 0 <= step <= BIGINT_MAX else None


JsonObject = Annotated[dict[str, Any], AfterValidator(_checked_json)]
"""A JSON object rlab stores whole (a rollout's extra, an experiment's config): storable text
and finite numbers throughout, nested at most MAX_JSON_DEPTH levels."""
