"""Experiments found by MLflow's filter grammar (webapp.runs.search_grammar), for
experiments/search: attributes name (= != LIKE ILIKE), experiment_id (= != IN NOT IN),
creation_time and last_update_time (milliseconds, = != < <= > >=), and tags, of which rlab's
experiments have none (IS NULL matches every one)."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from webapp.experiments.models import Experiment
from webapp.runs.run_search import Binary, compare, time_condition
from webapp.runs.search_grammar import (
    Clause,
    Field,
    Schema,
    SearchError,
    parse_filter,
    parse_order_bys,
)

EXPERIMENTS = Schema(
    attributes={key: key for key in ("name", "experiment_id", "creation_time",
                                     "last_update_time")},
    numeric=frozenset({"creation_time", "last_update_time"}),
    listable=frozenset({"experiment_id"}),
    kinds=frozenset({"tag", "attribute"}),
    null_kinds=frozenset({"tag"}),
)

_TIME_COLUMNS = {"creation_time": "created_at", "last_update_time": "updated_at"}
_DEFAULT_ORDER = ["creation_time DESC", "experiment_id ASC"]


def _condition(clause: Clause) -> Q:
    field, comparator, value = clause.field, clause.comparator, clause.value
    if field.kind == "tag":
        return Q() if comparator == "IS NULL" else Q(pk__in=[])
    if field.key in _TIME_COLUMNS:
        if value != int(value):
            raise SearchError(f"{field.key} takes a whole number of milliseconds, not {value}.")
        return time_condition(_TIME_COLUMNS[field.key], comparator, value)
    if field.key == "experiment_id":
        if comparator not in ("=", "!=", "IN", "NOT IN"):
            raise SearchError(f"Invalid comparator {comparator!r} for experiment_id: one of "
                              "=, !=, IN, NOT IN.")
        ids = [value] if isinstance(value, str) else list(value)
        pks = [int(i) for i in ids if i.isascii() and i.isdigit() and len(i) < 19]
        return Q(pk__in=pks) if comparator in ("=", "IN") else ~Q(pk__in=pks)
    return compare(Binary(F("name")), comparator, value)


def experiments_search(experiments: QuerySet[Experiment], *, filter_string: str = "",
                       order_by: list[str] = ()) -> QuerySet[Experiment]:
    """The experiments matching the filter, in the order_by's order (MLflow's default: newest
    first); SearchError for a filter or order_by outside the grammar."""
    for clause in parse_filter(filter_string, EXPERIMENTS):
        experiments = experiments.filter(_condition(clause))
    orders = parse_order_bys(list(order_by) or _DEFAULT_ORDER, EXPERIMENTS)
    names = []
    for order in orders:
        if order.field.kind != "attribute":
            raise SearchError(f"Experiments are ordered by attributes only, not "
                              f"{order.field}.")
        key = order.field.key
        value = (F(_TIME_COLUMNS[key]) if key in _TIME_COLUMNS
                 else F("pk") if key == "experiment_id" else Binary(F("name")))
        names.append(value.asc() if order.ascending else value.desc())
    if Field("attribute", "experiment_id") not in {order.field for order in orders}:
        names.append(F("pk").desc())  # MLflow's tie-break
    return experiments.order_by(*names)
