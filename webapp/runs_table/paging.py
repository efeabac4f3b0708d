"""Keyset pages of the runs table: a page starts after (or ends before) the row of a cursor, the
(sort value, id) of that row, so a page costs the same on page 1 and page 2,000, and no row is
repeated or skipped when runs share a sort value (the id breaks every tie). No OFFSET.

A cursor travels in the URL signed (django.core.signing): a forged or damaged one, or one made
for another order, is a CursorError, which the view answers with 400."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core import signing
from django.db.models import F, Q, QuerySet

SORT_ANNOTATION = "table_sort"
_SALT = "runs_table.cursor"


class CursorError(ValueError):
    """A page link that this table did not make, or made for another order."""


@dataclass(frozen=True)
class Sort:
    """An order of the table: a column's id, its direction, and the kind of its values, which
    says how a cursor carries them and whether they may be NULL (NULL always sorts last)."""

    id: str
    ascending: bool
    kind: str  # time, text, duration, number, json

    @property
    def nullable(self) -> bool:
        return self.kind in ("duration", "number", "json")


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str | None
    previous_cursor: str | None
    is_first: bool


def _encoded(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "time":
        return value.isoformat()
    if kind == "duration":
        return value // timedelta(microseconds=1)
    return value


def _decoded(kind: str, value: Any) -> Any:
    """A cursor's sort value as the query compares it; CursorError if it cannot be one."""
    if value is None:
        return None
    try:
        if kind == "time":
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                raise CursorError("The page link's time has no time zone.")
            return moment
        if kind == "duration":
            if isinstance(value, bool) or not isinstance(value, int):
                raise CursorError("The page link's duration is not a number.")
            return timedelta(microseconds=value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CursorError("The page link's sort value cannot be read.") from exc
    if kind == "text" and not isinstance(value, str):
        raise CursorError("The page link's sort value is not text.")
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))
                             or math.isnan(value)):
        raise CursorError("The page link's sort value is not a number.")
    return value


def cursor_make(sort: Sort, row: Any, *, backward: bool) -> str:
    return signing.dumps({"s": sort.id, "a": sort.ascending, "b": backward,
                          "v": _encoded(sort.kind, getattr(row, SORT_ANNOTATION)),
                          "i": row.pk}, salt=_SALT, compress=True)


def cursor_read(sort: Sort, text: str) -> tuple[Any, int, bool]:
    """(sort value, id, backward) of a cursor made for `sort`; CursorError otherwise."""
    try:
        data = signing.loads(text, salt=_SALT)
    except signing.BadSignature as exc:
        raise CursorError("This page link is damaged or was not made by rlab: start again "
                          "from the first page.") from exc
    if not isinstance(data, dict) or not {"s", "a", "b", "v", "i"} <= data.keys():
        raise CursorError("This page link is incomplete: start again from the first page.")
    if data["s"] != sort.id or data["a"] is not sort.ascending:
        raise CursorError("This page link is for another order of the table: start again "
                          "from the first page.")
    pk = data["i"]
    if isinstance(pk, bool) or not isinstance(pk, int) or not isinstance(data["b"], bool):
        raise CursorError("This page link's row cannot be read: start again from the first "
                          "page.")
    return _decoded(sort.kind, data["v"]), pk, data["b"]


def _after(sort: Sort, ascending: bool, nulls_last: bool, value: Any, pk: int) -> Q:
    """The rows after (value, pk) in the order (ascending, NULLs last or first), written so that
    an index on the sort value serves the range (value >= v AND (value > v OR id > pk))."""
    s = SORT_ANNOTATION
    beyond, at_least = ("gt", "gte") if ascending else ("lt", "lte")
    if value is None:
        tie = Q(**{f"{s}__isnull": True, f"pk__{beyond}": pk})
        return tie if nulls_last else Q(**{f"{s}__isnull": False}) | tie
    after = Q(**{f"{s}__{at_least}": value}) & (Q(**{f"{s}__{beyond}": value})
                                                 | Q(**{f"pk__{beyond}": pk}))
    if sort.nullable and nulls_last:
        after |= Q(**{f"{s}__isnull": True})
    return after


def _ordered(runs: QuerySet, sort: Sort, ascending: bool, nulls_last: bool) -> QuerySet:
    value = F(SORT_ANNOTATION)
    if sort.nullable:  # only then: an index of a NOT NULL column serves the plain order
        nulls = {"nulls_last": True} if nulls_last else {"nulls_first": True}
        value = value.asc(**nulls) if ascending else value.desc(**nulls)
    else:
        value = value.asc() if ascending else value.desc()
    return runs.order_by(value, "pk" if ascending else "-pk")


def page_of(runs: QuerySet, sort: Sort, cursor: str | None, size: int) -> Page:
    """The page of `runs` (annotated with SORT_ANNOTATION) that `cursor` points at: the first
    when None. A page read backward (a "previous" link) is read in the reverse order and turned
    round, so it too is one index range."""
    if not cursor:
        rows = list(_ordered(runs, sort, sort.ascending, True)[:size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return Page(rows, cursor_make(sort, rows[-1], backward=False) if more else None,
                    None, True)
    value, pk, backward = cursor_read(sort, cursor)
    ascending, nulls_last = (not sort.ascending, False) if backward else (sort.ascending, True)
    rows = list(_ordered(runs.filter(_after(sort, ascending, nulls_last, value, pk)), sort,
                         ascending, nulls_last)[:size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
        return Page(rows, cursor_make(sort, rows[-1], backward=False) if rows else None,
                    cursor_make(sort, rows[0], backward=True) if more else None, not more)
    return Page(rows, cursor_make(sort, rows[-1], backward=False) if more else None,
                cursor_make(sort, rows[0], backward=True) if rows else None, False)
