"""Logged models found by MLflow's filter grammar (webapp.runs.search_grammar), for
logged-models/search: attributes name, model_id, model_type, status and source_run_id (= != LIKE
ILIKE; status by MLflow's names, LOGGED_MODEL_READY…, or rlab's), creation_timestamp and
last_updated_timestamp (milliseconds, = != < <= > >=), params.<key> and tags.<key> (= != LIKE
ILIKE, IS [NOT] NULL). A logged model keeps no metrics here: a filter on one is refused."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from webapp.artifacts.models import LoggedModel, LoggedModelStatus
from webapp.runs.run_search import Binary, JsonText, compare, expression_lookup, time_condition
from webapp.runs.search_grammar import Clause, Schema, parse_filter

STATUS_TO_MLFLOW = {
    LoggedModelStatus.PENDING: "LOGGED_MODEL_PENDING",
    LoggedModelStatus.READY: "LOGGED_MODEL_READY",
    LoggedModelStatus.FAILED: "LOGGED_MODEL_UPLOAD_FAILED",
}
STATUS_FROM_MLFLOW = {name: status for status, name in STATUS_TO_MLFLOW.items()}

LOGGED_MODELS = Schema(
    attributes={"name": "name", "model_id": "model_id", "model_type": "model_type",
                "status": "status", "source_run_id": "source_run_id",
                "creation_timestamp": "creation_timestamp", "creation_time": "creation_timestamp",
                "last_updated_timestamp": "last_updated_timestamp"},
    numeric=frozenset({"creation_timestamp", "last_updated_timestamp"}),
    listable=frozenset(),
    kinds=frozenset({"param", "tag", "attribute"}),
    null_kinds=frozenset({"param", "tag"}),
)
_TIME_COLUMNS = {"creation_timestamp": "created_at", "last_updated_timestamp": "updated_at"}
_TEXT_COLUMNS = {"name": "name", "model_id": "pk", "model_type": "model_type",
                 "status": "status", "source_run_id": "source_run_id"}


def _condition(clause: Clause) -> Q:
    field, comparator, value = clause.field, clause.comparator, clause.value
    if field.kind in ("param", "tag"):
        text = JsonText("params" if field.kind == "param" else "tags", field.key)
        if comparator in ("IS NULL", "IS NOT NULL"):
            return Q(expression_lookup(text, "isnull", comparator == "IS NULL"))
        return compare(Binary(text), comparator, value)
    if field.key in _TIME_COLUMNS:
        return time_condition(_TIME_COLUMNS[field.key], comparator, value)
    if field.key == "status" and comparator in ("=", "!="):
        value = STATUS_FROM_MLFLOW.get(value, value.lower())
    return compare(Binary(F(_TEXT_COLUMNS[field.key])), comparator, value)


def models_search(models: QuerySet[LoggedModel], filter_string: str) -> QuerySet[LoggedModel]:
    """The models that pass the filter; SearchError for a filter outside the grammar (never an
    answer that ignores part of it)."""
    for clause in parse_filter(filter_string, LOGGED_MODELS):
        models = models.filter(_condition(clause))
    return models
