"""The columns of the runs table: the fixed ones every run has, and those a user picks (a config
setting, or a metric summarised one way), each named by an id that travels in URLs and is kept
in the user's ColumnSet.

Column ids:
- `config:<setting>`: the run's value of a config setting (top level);
- `metric:last:<key>`, `metric:min:<key>`, `metric:max:<key>`: the metric's value at its
  highest step, its lowest, its highest (from runs.MetricSummary: one index probe per run);
- `metric:mean:<k>:<key>`: the mean of its last k points, k in 1..MAX_K (read from the points:
  k index reads per run shown, and per run sorted by it: slower over many runs).
"""

from __future__ import annotations

from dataclasses import dataclass

from webapp.runs.models import METRIC_KEY_MAX_LENGTH

MAX_COLUMNS = 20
MAX_K = 100
CONFIG_KEY_MAX_LENGTH = 200
AGGREGATES = ("last", "min", "max", "mean")
SUMMARY_FIELDS = {"last": "last_value", "min": "min_value", "max": "max_value"}
# The columns every run has, sortable by these names.
FIXED_SORTS = ("created", "name", "experiment", "status", "author", "duration")
DEFAULT_SORT = "created"


class ColumnError(ValueError):
    """A column id that names no column; the message says why."""


@dataclass(frozen=True)
class Column:
    kind: str  # "config" or "metric"
    key: str
    aggregate: str = ""  # a metric's: last, min, max or mean
    k: int = 0  # mean of the last k points

    @property
    def id(self) -> str:
        if self.kind == "config":
            return f"config:{self.key}"
        if self.aggregate == "mean":
            return f"metric:mean:{self.k}:{self.key}"
        return f"metric:{self.aggregate}:{self.key}"

    @property
    def label(self) -> str:
        """The header: the key, and for a metric which number of it (min and max said as such,
        so "best" is never a guess at which way is better)."""
        if self.kind == "config":
            return self.key
        if self.aggregate == "mean":
            return f"{self.key} (mean of last {self.k})"
        return f"{self.key} ({self.aggregate})"

    @property
    def summary_field(self) -> str | None:
        """The MetricSummary column it reads, or None (config; a mean of the last k)."""
        return SUMMARY_FIELDS.get(self.aggregate) if self.kind == "metric" else None


def parse_column(text: str) -> Column:
    """The column an id names.

    >>> parse_column("metric:mean:10:reward/mean")
    Column(kind='metric', key='reward/mean', aggregate='mean', k=10)
    >>> parse_column("config:learning_rate").label
    'learning_rate'
    >>> parse_column("metric:max:eval:acc").label
    'eval:acc (max)'
    """
    if not isinstance(text, str):
        raise ColumnError("A column is named by text: config:<setting> or metric:<how>:<key>.")
    kind, _, rest = text.partition(":")
    if kind == "config":
        key = rest.strip()
        if not key or len(key) > CONFIG_KEY_MAX_LENGTH:
            raise ColumnError("A config column needs the name of a setting (at most "
                              f"{CONFIG_KEY_MAX_LENGTH} characters).")
        return Column("config", key)
    if kind != "metric":
        raise ColumnError(f"Unknown column {text[:80]!r}: a column is config:<setting> or "
                          "metric:<last|min|max|mean>:<key>.")
    aggregate, _, rest = rest.partition(":")
    if aggregate not in AGGREGATES:
        raise ColumnError(f"A metric column shows last, min, max or mean, not {aggregate[:20]!r}.")
    k = 0
    if aggregate == "mean":
        count, _, rest = rest.partition(":")
        if not (count.isascii() and count.isdigit() and 1 <= int(count) <= MAX_K):
            raise ColumnError(f"The mean of the last k points takes k from 1 to {MAX_K}.")
        k = int(count)
    if not rest or len(rest) > METRIC_KEY_MAX_LENGTH:
        raise ColumnError("A metric column needs the metric's key (at most "
                          f"{METRIC_KEY_MAX_LENGTH} characters).")
    return Column("metric", rest, aggregate, k)


def parse_columns(texts: list[str]) -> list[Column]:
    """Columns from ids, each once, in order; ColumnError for a bad one or too many."""
    columns: list[Column] = []
    for text in texts:
        column = parse_column(text)
        if column not in columns:
            columns.append(column)
    if len(columns) > MAX_COLUMNS:
        raise ColumnError(f"At most {MAX_COLUMNS} columns; remove some first.")
    return columns


def stored_columns(ids: object) -> list[Column]:
    """The columns a ColumnSet keeps, leaving out any id that no longer parses (kept from an
    older rule): a table never fails for its saved columns."""
    if not isinstance(ids, list):
        return []
    columns: list[Column] = []
    for text in ids:
        try:
            column = parse_column(text)
        except ColumnError:
            continue
        if column not in columns:
            columns.append(column)
    return columns[:MAX_COLUMNS]
