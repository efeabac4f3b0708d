"""MLflow's search grammar (mlflow/utils/search_utils.py), read by rlab's own parser: a filter is
comparisons joined by AND (MLflow has no OR), each `<entity>.<key> <comparator> <value>`; an
order_by is `<entity>.<key> [ASC|DESC]`.

    metrics.accuracy > 0.9 and params.model = 'gpt2' and tags.`team name` LIKE 'rl-%'
    attributes.run_id IN ('12', '13') and tags.method IS NOT NULL

Entities: `metrics`/`metric`, `params`/`param`/`parameters`/`parameter`, `tags`/`tag`,
`attributes`/`attribute`/`attr`/`run` (a bare key is an attribute). A key with characters other
than letters, digits and `_` goes in backticks or double quotes; a key may hold dots
(`params.optimizer.lr` is the parameter "optimizer.lr"). Strings are in single or double quotes,
numbers bare.

What each entity takes is MLflow's: metrics and numeric attributes a number with = != < <= > >=;
params and tags a quoted string with = != LIKE ILIKE, or IS [NOT] NULL; string attributes a
quoted string with = != LIKE ILIKE, and run_id also IN / NOT IN a list. Anything else is an
error that names the offending token. `numeric_params=True` (rlab's own API, not MLflow's) also
lets a parameter be compared with a bare number: `params.lr > 1e-6`. The queries are
webapp.runs.run_search's (and webapp.mlflow_compat.experiment_search's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["metric", "param", "tag", "attribute"]
Value = str | float | tuple[str, ...] | None

ENTITY_ALIASES: dict[str, Kind] = {
    "metric": "metric", "metrics": "metric",
    "parameter": "param", "parameters": "param", "param": "param", "params": "param",
    "tag": "tag", "tags": "tag",
    "attribute": "attribute", "attributes": "attribute", "attr": "attribute", "run": "attribute",
}
NUMBER_COMPARATORS = frozenset({"=", "!=", "<", "<=", ">", ">="})
STRING_COMPARATORS = frozenset({"=", "!=", "LIKE", "ILIKE"})
NULL_COMPARATORS = frozenset({"IS NULL", "IS NOT NULL"})
LIST_COMPARATORS = frozenset({"IN", "NOT IN"})


class SearchError(ValueError):
    """A filter or order_by that MLflow's grammar does not take; the message names the token."""


@dataclass(frozen=True)
class Field:
    """What a search looks at: a kind of entity and its key, for example ("metric", "loss")."""

    kind: Kind
    key: str

    def __str__(self) -> str:
        return f"{self.kind}s.{self.key}" if self.kind != "attribute" else self.key


@dataclass(frozen=True)
class Clause:
    """One comparison of a filter: a float for a number, a str for a string, a tuple of str for
    an IN list, None for IS [NOT] NULL."""

    field: Field
    comparator: str
    value: Value


@dataclass(frozen=True)
class Order:
    field: Field
    ascending: bool


@dataclass(frozen=True)
class Schema:
    """What one search (runs, experiments) takes: its attribute keys (aliases mapped to their
    key), which of them are numbers, which take an IN list, and its entities."""

    attributes: dict[str, str]
    numeric: frozenset[str]
    listable: frozenset[str]
    kinds: frozenset[Kind]
    null_kinds: frozenset[Kind]
    numeric_params: bool = False
    status_words: dict[str, str] | None = None
    """The word each run status is searched by (MLflow's FINISHED...); None: rlab's own."""
    name_tag: str | None = None
    """A tag that stands for the run's name (MLflow's mlflow.runName)."""


RUNS = Schema(
    attributes={"run_id": "run_id", "run_name": "run_name", "run name": "run_name",
                "Run name": "run_name", "Run Name": "run_name", "status": "status",
                "user_id": "user_id", "start_time": "start_time", "created": "start_time",
                "Created": "start_time", "end_time": "end_time"},
    numeric=frozenset({"start_time", "end_time"}),
    listable=frozenset({"run_id"}),
    kinds=frozenset({"metric", "param", "tag", "attribute"}),
    null_kinds=frozenset({"param", "tag"}),
)
RLAB_RUNS = replace(RUNS, numeric_params=True)
"""rlab's own runs list: MLflow's grammar with rlab's statuses (succeeded, failed...), and
parameters compared with bare numbers."""

_TOKENS = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.`"]))
  | (?P<identifier>(?:\w+|`[^`]*`)(?:\.(?:\w+|`[^`]*`|"[^"]*"))*)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<operator><=|>=|!=|<>|==|=|<|>)
  | (?P<punctuation>[(),])
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_KEYWORDS = frozenset({"AND", "OR", "LIKE", "ILIKE", "IN", "NOT", "IS", "NULL", "ASC", "DESC"})


@dataclass(frozen=True)
class _Token:
    type: str
    text: str
    at: int

    def __str__(self) -> str:
        return f"'{self.text}' (character {self.at + 1})"


def _tokens(text: str) -> list[_Token]:
    if "\x00" in text:
        raise SearchError(f"The filter {text!r} contains a NUL character (U+0000).")
    found = []
    for match in _TOKENS.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "space":
            continue
        if kind == "identifier" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        if kind == "other":
            raise SearchError(f"Unexpected {_Token(kind, value, match.start())} in {text!r}.")
        found.append(_Token(kind, value, match.start()))
    return found


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self, offset: int = 0) -> _Token | None:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, expected: str) -> _Token:
        token = self.peek()
        if token is None:
            raise SearchError(f"{self.text!r} ends where {expected} was expected.")
        self.at += 1
        return token

    def keyword(self, *words: str) -> bool:
        """Takes the keywords if they come next."""
        for offset, word in enumerate(words):
            token = self.peek(offset)
            if token is None or token.type != "keyword" or token.text != word:
                return False
        self.at += len(words)
        return True


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"'":
        return text[1:-1]
    return text


def _field(token: _Token, schema: Schema) -> Field:
    """The entity and key of an identifier, as MLflow splits it: at its first dot."""
    if token.type != "identifier":
        raise SearchError(f"Expected a key such as metrics.loss, params.lr or "
                          f"attributes.status, found {token}.")
    entity, dot, key = token.text.partition(".")
    if not dot:
        entity, key = "attribute", entity
    kind = ENTITY_ALIASES.get(_unquoted(entity))
    if kind is None or kind not in schema.kinds:
        names = sorted(name for name, alias in ENTITY_ALIASES.items() if alias in schema.kinds)
        raise SearchError(f"Invalid entity type {_unquoted(entity)!r} in {token}: one of "
                          f"{', '.join(names)}.")
    key = _unquoted(key)
    if kind == "attribute":
        if key not in schema.attributes:
            raise SearchError(f"Invalid attribute key {key!r} in {token}: one of "
                              f"{', '.join(sorted(set(schema.attributes.values())))}.")
        key = schema.attributes[key]
    if not key:
        raise SearchError(f"Empty key in {token}.")
    return Field(kind, key)


def _comparator(reader: _Reader) -> str:
    for words in (("IS", "NOT", "NULL"), ("IS", "NULL"), ("NOT", "IN"), ("IN",), ("LIKE",),
                  ("ILIKE",)):
        if reader.keyword(*words):
            return " ".join(words)
    token = reader.take("a comparator")
    if token.type != "operator" or token.text in ("<>", "=="):
        raise SearchError(f"Expected a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, "
                          f"IS NULL, IS NOT NULL), found {token}.")
    return token.text


def _string_list(reader: _Reader) -> tuple[str, ...]:
    opening = reader.take("a list such as ('a', 'b')")
    if opening.text != "(":
        raise SearchError(f"Expected a list of quoted strings such as ('a', 'b'), found "
                          f"{opening}.")
    items = []
    while True:
        token = reader.take("a quoted string or ')'")
        if token.text == ")" and items:
            return tuple(items)
        if token.type != "string":
            raise SearchError(f"Expected a quoted string in the list, found {token}.")
        items.append(_unquoted(token.text))
        separator = reader.take("',' or ')'")
        if separator.text == ")":
            return tuple(items)
        if separator.text != ",":
            raise SearchError(f"Expected ',' or ')' in the list, found {separator}.")


def _value(reader: _Reader, field: Field, comparator: str, schema: Schema) -> Value:
    """The value after the comparator, checked as MLflow checks it for the field's kind."""
    where = f"{field} {comparator}"
    numeric = field.kind == "metric" or (field.kind == "attribute" and field.key in schema.numeric)
    if comparator in NULL_COMPARATORS:
        if field.kind not in schema.null_kinds:
            raise SearchError(f"IS NULL and IS NOT NULL take "
                              f"{' and '.join(sorted(k + 's' for k in schema.null_kinds))} "
                              f"only, not {field}.")
        return None
    if comparator in LIST_COMPARATORS:
        if field.kind != "attribute" or field.key not in schema.listable:
            raise SearchError(f"{comparator} takes {', '.join(sorted(schema.listable))} only, "
                              f"not {field}.")
        return _string_list(reader)
    if numeric:
        allowed = NUMBER_COMPARATORS
    elif field.kind == "param" and schema.numeric_params:
        allowed = STRING_COMPARATORS | NUMBER_COMPARATORS
    else:
        allowed = STRING_COMPARATORS
    if comparator not in allowed:
        raise SearchError(f"Invalid comparator {comparator!r} for {field}: one of "
                          f"{', '.join(sorted(allowed))}.")
    token = reader.take(f"a value after {where!r}")
    if numeric or (field.kind == "param" and comparator not in STRING_COMPARATORS):
        if token.type != "number":
            raise SearchError(f"Expected a number after {where!r}, found {token}.")
        return float(token.text)
    if token.type == "number" and field.kind == "param" and schema.numeric_params:
        return float(token.text)
    if token.type != "string":
        raise SearchError(f"Expected a quoted string after {where!r} (e.g. 'my-value'), found "
                          f"{token}.")
    return _unquoted(token.text)


def parse_filter(text: str, schema: Schema = RUNS) -> list[Clause]:
    """The clauses of a filter string; an empty filter has none."""
    reader = _Reader(text or "")
    clauses = []
    while reader.peek() is not None:
        if clauses:
            joiner = reader.take("AND")
            if joiner.type == "keyword" and joiner.text == "OR":
                raise SearchError(f"MLflow's filter has no OR ({joiner}): join comparisons "
                                  "with AND, or run one search per alternative.")
            if joiner.type != "keyword" or joiner.text != "AND":
                raise SearchError(f"Expected AND between comparisons, found {joiner}.")
            if reader.peek() is None:
                break  # a trailing AND, which MLflow lets pass
        field = _field(reader.take("a comparison"), schema)
        comparator = _comparator(reader)
        clauses.append(Clause(field, comparator, _value(reader, field, comparator, schema)))
    return clauses


def parse_order_by(text: str, schema: Schema = RUNS) -> Order:
    """One order_by clause: a key, then ASC (the default) or DESC."""
    reader = _Reader(text or "")
    field = _field(reader.take("a key to order by"), schema)
    ascending = True
    direction = reader.peek()
    if direction is not None:
        if direction.type != "keyword" or direction.text not in ("ASC", "DESC"):
            raise SearchError(f"Invalid order_by clause {text!r}: expected ASC or DESC after the "
                              f"key, found {direction}.")
        ascending = direction.text == "ASC"
        reader.at += 1
    extra = reader.peek()
    if extra is not None:
        raise SearchError(f"Invalid order_by clause {text!r}: unexpected {extra}.")
    return Order(field, ascending)


def parse_order_bys(texts: list[str], schema: Schema = RUNS) -> list[Order]:
    orders = [parse_order_by(text, schema) for text in texts]
    fields = [order.field for order in orders]
    if len(set(fields)) < len(fields):
        raise SearchError(f"order_by names a key twice: {texts}.")
    return orders
