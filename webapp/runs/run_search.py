"""Runs found by MLflow's filter grammar (webapp.runs.search_grammar), as a queryset: each clause
is a condition in SQL (a subquery for a metric), so a search reads only the runs it returns.
Used by MLflow's runs/search and by rlab's own runs list (`GET /api/runs?filter=`).

Where rlab keeps what MLflow searches:
- params: the run's config; tags: its tracked_tags (and the schema's name_tag, MLflow's
  `tags.mlflow.runName`, its name);
- metrics: the latest value of a metric, as MLflow's get_run reports it: the point at the highest
  step (then the latest wall time, then the highest value); NaN matches only `!=`, as in MLflow;
- attributes: run_id (the run's number in rlab's URLs), run_name, status (in the schema's
  status_words, else rlab's own), user_id (the username), start_time / created and end_time
  (milliseconds since 1970).

LIKE is case-sensitive and ILIKE is not (`%` any text, `_` one character); strings compare and
sort by code point, as MLflow's own store does.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Expression,
    F,
    FloatField,
    Func,
    IntegerField,
    Lookup,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, NullIf

from webapp.runs.models import MetricPoint, Run
from webapp.runs.search_grammar import (
    RUNS,
    Clause,
    Field,
    Order,
    Schema,
    parse_filter,
    parse_order_bys,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The times a datetime holds: years 1 to 9999, in milliseconds since 1970.
_FIRST_MS, _LAST_MS = -62_135_596_800_000, 253_402_300_799_999
_NUMBER = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


class JsonText(Func):
    """The text of one key of a JSON object column, any key (digits, dots and quotes included);
    NULL where the object lacks it."""

    output_field = TextField()

    def __init__(self, column: str, key: str):
        super().__init__(F(column), Value(key))

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, function="jsonb_extract_path_text", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        column, key = self.source_expressions
        path = Value('$."' + key.value.replace('"', '\\"') + '"')
        return Func(column, path, function="json_extract", output_field=TextField()).as_sql(
            compiler, connection, **extra)


class Binary(Func):
    """A string compared and sorted by code point, as MLflow's SQLite store does ("C" collation
    on Postgres; SQLite's default already)."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template='(%(expressions)s COLLATE "C")',
                           **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="%(expressions)s", **extra)


class Like(Lookup):
    """SQL's LIKE, case-sensitive on both databases (SQLite's own LIKE ignores case, its GLOB
    does not)."""

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        # No escape character, as in MLflow's SQLite store: a backslash is itself.
        return f"{lhs} LIKE {rhs} ESCAPE ''", [*lhs_params, *rhs_params]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        glob = "".join({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(c, c)
                       for c in self.rhs)
        return f"{lhs} GLOB %s", [*lhs_params, glob]


class ILike(Lookup):
    """SQL's ILIKE: LIKE ignoring case."""

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs} ESCAPE ''", [*lhs_params, *rhs_params]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"lower({lhs}) LIKE lower({rhs})", [*lhs_params, *rhs_params]


def latest_metric(key: str) -> Subquery:
    """The metric's latest value for the run of the outer query."""
    points = MetricPoint.objects.filter(run=OuterRef("pk"), key=key)
    return Subquery(points.order_by("-step", "-wall_time", "-value").values("value")[:1],
                    output_field=FloatField())


def run_name() -> Expression:
    """The run's name as pages and MLflow show it: its own, else "<experiment> #<number>"."""
    return Coalesce(NullIf(F("name"), Value("")),
                    Concat(F("experiment__name"), Value(" #"), Cast("number", CharField())),
                    output_field=CharField())


def status_word(schema: Schema) -> Expression:
    if schema.status_words is None:
        return F("status")
    return Case(*[When(status=status, then=Value(word))
                  for status, word in schema.status_words.items()], output_field=CharField())


def _moment(ms: float) -> datetime:
    return _EPOCH + timedelta(milliseconds=min(max(ms, _FIRST_MS), _LAST_MS))


def time_condition(column: str, comparator: str, ms: float) -> Q:
    """A condition on the whole milliseconds of a time (MLflow's start_time, end_time), as
    ranges of the column itself, so an index on it serves."""
    at, after = _moment(math.floor(ms)), _moment(math.floor(ms) + 1)
    whole = ms == math.floor(ms)
    if comparator in ("=", "!="):
        equal = Q(**{f"{column}__gte": at, f"{column}__lt": after}) if whole else Q(pk__in=[])
        return equal if comparator == "=" else Q(**{f"{column}__isnull": False}) & ~equal
    bound = {">": after, ">=": _moment(math.ceil(ms)), "<": _moment(math.ceil(ms)),
             "<=": after}[comparator]
    lookup = {">": "gte", ">=": "gte", "<": "lt", "<=": "lt"}[comparator]
    return Q(**{f"{column}__{lookup}": bound})


def compare(expression: Expression, comparator: str, value) -> Q:
    """`expression <comparator> value`, false where the expression is NULL (a missing key)."""
    if comparator == "LIKE":
        return Q(Like(expression, value))
    if comparator == "ILIKE":
        return Q(ILike(expression, value))
    lookup = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}.get(comparator)
    if lookup is None:  # !=
        return ~Q(expression_lookup(expression, "exact", value)) & ~Q(
            expression_lookup(expression, "isnull", True))
    return Q(expression_lookup(expression, lookup, value))


def expression_lookup(expression: Expression, lookup: str, value) -> Lookup:
    return expression.get_lookup(lookup)(expression, value)


def _not_nan(expression: Expression) -> Q:
    """MLflow's NaN matches no comparison but !=; Postgres's NaN equals NaN and is above every
    number. (SQLite stores NaN as NULL, which matches nothing already.)"""
    if connection.vendor != "postgresql":
        return Q()
    return ~Q(expression_lookup(expression, "exact", math.nan))


def _param_number(key: str) -> Expression:
    """A parameter as a number, NULL where its text is not one."""
    text = JsonText("config", key)
    return Case(When(Q(expression_lookup(text, "regex", _NUMBER)),
                     then=Cast(text, FloatField())), output_field=FloatField())


def _string_attribute(key: str, schema: Schema) -> Expression:
    return {"run_name": run_name, "status": lambda: status_word(schema),
            "user_id": lambda: F("launched_by__username"),
            "run_id": lambda: Cast("pk", CharField())}[key]()


def _condition(clause: Clause, schema: Schema) -> Q:
    field, comparator, value = clause.field, clause.comparator, clause.value
    if field.kind == "metric":
        latest = latest_metric(field.key)
        if comparator == "!=":
            return Q(expression_lookup(latest, "isnull", False)) & ~Q(
                expression_lookup(latest, "exact", value))
        return compare(latest, comparator, value) & _not_nan(latest)
    if field.kind in ("param", "tag"):
        column = "config" if field.kind == "param" else "tracked_tags"
        if field.kind == "tag" and field.key == schema.name_tag:
            text = run_name()
        else:
            text = JsonText(column, field.key)
        if comparator in ("IS NULL", "IS NOT NULL"):
            return Q(expression_lookup(text, "isnull", comparator == "IS NULL"))
        if isinstance(value, float):
            return compare(_param_number(field.key), comparator, value)
        return compare(Binary(text), comparator, value)
    if field.key in ("start_time", "end_time"):
        column = "started_at" if field.key == "start_time" else "finished_at"
        return time_condition(column, comparator, value)
    if field.key == "run_id" and comparator in ("=", "!=", "IN", "NOT IN"):
        ids = [value] if isinstance(value, str) else list(value)
        pks = [int(i) for i in ids if i.isascii() and i.isdigit() and len(i) < 19]
        return Q(pk__in=pks) if comparator in ("=", "IN") else ~Q(pk__in=pks)
    expression = _string_attribute(field.key, schema)
    if comparator in ("IN", "NOT IN"):
        inside = Q(expression_lookup(expression, "in", list(value)))
        return inside if comparator == "IN" else ~inside
    return compare(Binary(expression), comparator, value)


def _sort_value(field: Field, schema: Schema) -> Expression:
    if field.kind == "metric":
        return latest_metric(field.key)
    if field.kind == "param":
        return Binary(JsonText("config", field.key))
    if field.kind == "tag":
        return Binary(run_name() if field.key == schema.name_tag
                      else JsonText("tracked_tags", field.key))
    if field.key in ("start_time", "end_time"):
        return F("started_at" if field.key == "start_time" else "finished_at")
    if field.key == "run_id":
        return F("pk")
    return Binary(_string_attribute(field.key, schema))


def _ordered(runs: QuerySet[Run], orders: list[Order], schema: Schema) -> QuerySet[Run]:
    """MLflow's order: each key's values, then NaN (metrics), then runs without the key; ties by
    start time, newest first, then by id."""
    names: list = []
    for index, order in enumerate(orders):
        value, rank = f"search_value_{index}", f"search_rank_{index}"
        runs = runs.annotate(**{value: _sort_value(order.field, schema)})
        missing = [When(Q(**{f"{value}__isnull": True}), then=Value(2))]
        if order.field.kind == "metric" and connection.vendor == "postgresql":
            missing.append(When(Q(**{value: math.nan}), then=Value(1)))
        runs = runs.annotate(**{rank: Case(*missing, default=Value(0),
                                           output_field=IntegerField())})
        names += [rank, value if order.ascending else f"-{value}"]
    if Field("attribute", "start_time") not in {order.field for order in orders}:
        names.append(F("started_at").desc(nulls_last=True))
    return runs.order_by(*names, "pk")


def runs_search(runs: QuerySet[Run], *, filter_string: str = "", order_by: list[str] = (),
                schema: Schema = RUNS, default_order: bool = True) -> QuerySet[Run]:
    """The runs matching the filter, in the order_by's order (then MLflow's default, newest
    start first; `default_order=False` keeps the queryset's own order when there is no
    order_by). A filter or order_by outside the grammar raises SearchError, naming its token."""
    for clause in parse_filter(filter_string, schema):
        runs = runs.filter(_condition(clause, schema))
    orders = parse_order_bys(list(order_by), schema)
    return _ordered(runs, orders, schema) if orders or default_order else runs


def latest_metrics(run_ids: list[int]) -> dict[int, list[MetricPoint]]:
    """Each run's latest point of every metric, for a page of search results: its keys are found
    by walking the (run, key, step) index one key at a time, then one index probe per key, so a
    page costs the same whatever the runs' lengths."""
    found: dict[int, list[MetricPoint]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    table, runs = MetricPoint._meta.db_table, Run._meta.db_table
    marks = ", ".join(["%s"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH RECURSIVE k(run_id, key) AS (
                SELECT r.id, (SELECT min(key) FROM {table} WHERE run_id = r.id)
                FROM {runs} r WHERE r.id IN ({marks})
                UNION ALL
                SELECT k.run_id, (SELECT min(t.key) FROM {table} t
                                  WHERE t.run_id = k.run_id AND t.key > k.key)
                FROM k WHERE k.key IS NOT NULL)
            SELECT (SELECT id FROM {table} t WHERE t.run_id = k.run_id AND t.key = k.key
                    ORDER BY t.step DESC LIMIT 1)
            FROM k WHERE k.key IS NOT NULL""", run_ids)
        ids = [point_id for (point_id,) in cursor.fetchall()]
    # Fetched by primary key apart: joined, the planner may read the whole table instead.
    for point in MetricPoint.objects.filter(pk__in=ids).order_by("run_id", "key"):
        found[point.run_id].append(point)
    return found
