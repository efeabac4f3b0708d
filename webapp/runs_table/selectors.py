"""Reads of the runs table: a project's runs filtered, searched and sorted, one keyset page of
them with the chosen columns' values, the columns a user keeps, the columns a project offers,
and the runs collapsed into groups with each metric column's mean and spread."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.db import connection, models
from django.db.models import (
    Avg,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FilteredRelation,
    FloatField,
    Func,
    Min,
    OuterRef,
    Q,
    QuerySet,
    StdDev,
    Value,
)
from django.db.models.expressions import RawSQL
from django.urls import reverse
from psycopg.types.json import Jsonb

from webapp.groups.grouping import group_id
from webapp.projects.models import Project
from webapp.reviews.models import RunStar, RunTag
from webapp.runs.models import MetricPoint, MetricSummary, Run
from webapp.runs.run_search import JsonText, run_name, runs_search
from webapp.runs.search_grammar import RLAB_RUNS, SearchError
from webapp.runs.seed_groups import NOT_THE_SETTING
from webapp.runs_table.columns import FIXED_SORTS, Column, parse_column, stored_columns
from webapp.runs_table.models import ColumnSet
from webapp.runs_table.paging import SORT_ANNOTATION, Page, Sort, page_of
from webapp.teams.models import Membership

PAGE_SIZE = 50
MAX_GROUPS = 200
GROUP_RUNS_SHOWN = 50
# The runs whose configs and metrics the column picker offers keys from: the newest, so the
# picker costs the same in a project of 100k runs.
OFFER_FROM_RUNS = 1000
GROUP_BY = ("seed_group", "config", "tag")
MISSING = "—"


class JsonSortValue(models.Field):
    """A config value as its database orders it (Postgres's jsonb: numbers by value, strings by
    text, typed; SQLite's json_extract: the same), compared with a cursor's value in kind."""

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        if connection.vendor == "postgresql":
            return Jsonb(value)
        return json.dumps(value) if isinstance(value, (dict, list)) else value

    def get_prep_value(self, value):
        return value

    def to_python(self, value):
        return value

    def from_db_value(self, value, expression, connection):
        # Django reads jsonb as its text (JSONField parses it); json_extract gives values
        if connection.vendor == "postgresql" and isinstance(value, str):
            return json.loads(value)
        return value


class JsonValue(Func):
    """One top-level setting of the run's config, typed (NULL where the config lacks it)."""

    output_field = JsonSortValue()

    def __init__(self, key: str):
        super().__init__(F("config"), Value(key))

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(%(expressions)s)", arg_joiner=" -> ",
                           **extra)

    def as_sqlite(self, compiler, connection, **extra):
        column, key = self.source_expressions
        path = Value('$."' + key.value.replace('"', '\\"') + '"')
        return Func(column, path, function="json_extract").as_sql(compiler, connection, **extra)


def mean_of_last(key: str, k: int) -> RawSQL:
    """The mean of the run's last k points of a metric (NaN left out): k reads of the
    (run, key, step) index, backward, for the run of the outer query."""
    points, runs = MetricPoint._meta.db_table, Run._meta.db_table
    number = " AND p.value <> 'NaN'" if connection.vendor == "postgresql" else ""
    return RawSQL(f"(SELECT avg(last_points.value) FROM (SELECT p.value FROM {points} p "
                  f"WHERE p.run_id = {runs}.id AND p.key = %s{number} "
                  f"ORDER BY p.step DESC LIMIT %s) last_points)", (key, k),
                  output_field=FloatField())


def _summary_join(runs: QuerySet, alias: str, key: str) -> QuerySet:
    """The run's MetricSummary of `key` joined as `alias` (LEFT: a run without it has NULLs)."""
    return runs.annotate(**{alias: FilteredRelation(
        "metric_summaries", condition=Q(metric_summaries__key=key))})


def column_expression(runs: QuerySet, column: Column, alias: str) -> tuple[QuerySet, Any]:
    """`runs` made ready to read the column's value, and the expression that reads it."""
    if column.kind == "config":
        return runs, JsonValue(column.key)
    if column.summary_field:
        return _summary_join(runs, alias, column.key), F(f"{alias}__{column.summary_field}")
    return runs, mean_of_last(column.key, column.k)


# ---- the runs: filters, search, order

@dataclass
class Filters:
    """What the table shows, as the filter form validated it; empty fields filter nothing."""

    q: str = ""
    statuses: list[str] = field(default_factory=list)
    tag: str = ""
    author: str = ""
    experiment_id: int | None = None
    sweep_id: int | None = None
    config_key: str = ""
    config_value: str = ""
    metric_key: str = ""
    metric_min: float | None = None
    metric_max: float | None = None
    starred: bool = False


@dataclass(frozen=True)
class Searched:
    runs: QuerySet
    how: str  # "", "filter" (MLflow's grammar) or "names"
    error: str = ""


# Text that means to be a filter: a namespaced key or a comparison. Plain words search names.
_LOOKS_LIKE_FILTER = re.compile(
    r"(?i)\b(metrics|params|tags|attributes|attribute|metric|param|tag)\.|[=<>]|"
    r"\b(like|ilike|is\s+(not\s+)?null|in\s*\()")


def project_runs(project: Project) -> QuerySet[Run]:
    return (Run.objects.filter(experiment__project=project)
            .select_related("experiment", "launched_by"))


def search(runs: QuerySet[Run], text: str) -> Searched:
    """The runs that the search box's text finds: MLflow's filter grammar when the text parses
    as a filter (`metrics.reward > 0.5 and params.lr = 1e-6`); else, for plain words, the runs
    whose name or experiment's name holds the text. Text that means to be a filter but does not
    parse gets the grammar's message and no runs."""
    text = text.strip()
    if not text:
        return Searched(runs, "")
    try:
        return Searched(runs_search(runs, filter_string=text, schema=RLAB_RUNS,
                                    default_order=False), "filter")
    except SearchError as exc:
        if _LOOKS_LIKE_FILTER.search(text):
            return Searched(runs.none(), "filter", f"Not a filter rlab can read: {exc}")
    return Searched(runs.filter(Q(name__icontains=text) | Q(experiment__name__icontains=text)),
                    "names")


def filtered_runs(project: Project, user, filters: Filters) -> Searched:
    runs = project_runs(project)
    if filters.statuses:
        runs = runs.filter(status__in=filters.statuses)
    if filters.tag:
        runs = runs.filter(Exists(RunTag.objects.filter(run=OuterRef("pk"),
                                                        name=filters.tag.strip().lower())))
    if filters.author:
        runs = runs.filter(launched_by__username=filters.author)
    if filters.experiment_id is not None:
        runs = runs.filter(experiment_id=filters.experiment_id)
    if filters.sweep_id is not None:
        runs = runs.filter(sweep_id=filters.sweep_id)
    if filters.config_key:
        runs = runs.filter(_config_equals(filters.config_key, filters.config_value))
    if filters.metric_key and (filters.metric_min is not None or filters.metric_max is not None):
        within = MetricSummary.objects.filter(run=OuterRef("pk"), key=filters.metric_key)
        if filters.metric_min is not None:
            within = within.filter(last_value__gte=filters.metric_min)
        if filters.metric_max is not None:
            within = within.filter(last_value__lte=filters.metric_max)
        runs = runs.filter(Exists(within))
    if filters.starred:
        runs = runs.filter(Exists(RunStar.objects.filter(run=OuterRef("pk"), user=user)))
    return search(runs, filters.q)


def _config_equals(key: str, text: str) -> Q:
    """The runs whose setting `key` is `text`: as written (strings), or as a number ("1e-6"
    finds 0.000001); "—" (or nothing) finds the runs without the setting."""
    written = JsonText("config", key)
    if text.strip() in ("", MISSING):
        return Q(written.get_lookup("isnull")(written, True))
    equal = Q(written.get_lookup("exact")(written, text))
    try:
        number = float(text)
    except ValueError:
        return equal
    if math.isfinite(number):
        typed = JsonValue(key)
        equal |= Q(typed.get_lookup("exact")(typed, number))
    return equal


def sort_for(sort_id: str, ascending: bool) -> Sort:
    """The Sort a column id (or a fixed column's name) orders by; ColumnError if none."""
    if sort_id in FIXED_SORTS:
        kind = {"created": "time", "duration": "duration"}.get(sort_id, "text")
        return Sort(sort_id, ascending, kind)
    column = parse_column(sort_id)
    return Sort(column.id, ascending, "json" if column.kind == "config" else "number")


def sorted_runs(runs: QuerySet[Run], sort: Sort) -> QuerySet[Run]:
    """`runs` annotated with their sort value (SORT_ANNOTATION), for page_of."""
    fixed = {
        "created": lambda: F("created_at"),
        "name": run_name,
        "experiment": lambda: F("experiment__name"),
        "status": lambda: F("status"),
        "author": lambda: F("launched_by__username"),
        "duration": lambda: ExpressionWrapper(F("finished_at") - F("started_at"),
                                              output_field=DurationField()),
    }
    if sort.id in fixed:
        return runs.annotate(**{SORT_ANNOTATION: fixed[sort.id]()})
    runs, expression = column_expression(runs, parse_column(sort.id), "sort_summary")
    return runs.annotate(**{SORT_ANNOTATION: expression})


def runs_page(runs: QuerySet[Run], sort: Sort, cursor: str | None,
              size: int | None = None) -> Page:
    """One page (of PAGE_SIZE runs unless `size`) of the runs in `sort`'s order (CursorError
    for a forged cursor)."""
    return page_of(sorted_runs(runs, sort), sort, cursor, size or PAGE_SIZE)


# ---- what the page shows of its rows

@dataclass(frozen=True)
class Row:
    run: Run
    cells: list[str]
    tags: list[str]
    starred: bool

    @property
    def duration(self) -> str:
        """Claim to end (H:MM:SS), for a run that ended; MISSING before."""
        seconds = self.run.duration_seconds
        if seconds is None:
            return MISSING
        minutes, second = divmod(int(seconds), 60)
        hours, minute = divmod(minutes, 60)
        return f"{hours}:{minute:02d}:{second:02d}"


def shown(value: Any) -> str:
    """A value as a cell shows it: numbers in 4 significant digits (exact on hover elsewhere),
    text as is, other JSON as JSON; MISSING for none."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def column_values(runs: list[Run], columns: list[Column]) -> dict[int, list[Any]]:
    """Each run's value of each column: config from the runs themselves, last/min/max in one
    read of their summaries, each mean of the last k in one query for the page's runs."""
    ids = [run.pk for run in runs]
    values: dict[int, list[Any]] = {run.pk: [None] * len(columns) for run in runs}
    summaries: dict[tuple[int, str], MetricSummary] = {}
    keys = {column.key for column in columns if column.summary_field}
    if ids and keys:
        summaries = {(s.run_id, s.key): s for s in MetricSummary.objects.filter(
            run_id__in=ids, key__in=keys)}
    for index, column in enumerate(columns):
        if column.kind == "config":
            for run in runs:
                values[run.pk][index] = (run.config or {}).get(column.key)
        elif column.summary_field:
            for run in runs:
                summary = summaries.get((run.pk, column.key))
                values[run.pk][index] = getattr(summary, column.summary_field, None)
        elif ids:
            means = Run.objects.filter(pk__in=ids).annotate(
                mean=mean_of_last(column.key, column.k)).values_list("pk", "mean")
            for pk, mean in means:
                values[pk][index] = mean
    return values


def page_rows(runs: list[Run], columns: list[Column], user) -> list[Row]:
    ids = [run.pk for run in runs]
    tags: dict[int, list[str]] = {pk: [] for pk in ids}
    for run_id, name in RunTag.objects.filter(run_id__in=ids).values_list("run_id", "name"):
        tags[run_id].append(name)
    starred = set(RunStar.objects.filter(run_id__in=ids, user=user)
                  .values_list("run_id", flat=True))
    values = column_values(runs, columns)
    return [Row(run, [shown(value) for value in values[run.pk]], sorted(tags[run.pk]),
                run.pk in starred) for run in runs]


# ---- columns kept and offered

def columns_for(user, project: Project) -> list[Column]:
    kept = ColumnSet.objects.filter(user=user, project=project).values_list("columns", flat=True)
    return stored_columns(next(iter(kept), []))


@dataclass(frozen=True)
class Offered:
    config_keys: list[str]
    metric_keys: list[str]


def offered_columns(project: Project) -> Offered:
    """The settings and metrics of the project's OFFER_FROM_RUNS newest runs, for the picker
    (any other key can still be typed)."""
    newest = list(Run.objects.filter(experiment__project=project)
                  .order_by("-created_at", "-id").values_list("pk", flat=True)[:OFFER_FROM_RUNS])
    config_keys: set[str] = set()
    for config in Run.objects.filter(pk__in=newest).values_list("config", flat=True):
        if isinstance(config, dict):
            config_keys.update(config)
    metric_keys = set(MetricSummary.objects.filter(run_id__in=newest)
                      .values_list("key", flat=True).distinct())
    return Offered(sorted(config_keys), sorted(metric_keys))


def tag_names(project: Project, limit: int = 200) -> list[str]:
    """The team tags on the project's runs, for the tag filter's and tag action's suggestions."""
    return list(RunTag.objects.filter(run__experiment__project=project)
                .values_list("name", flat=True).distinct().order_by("name")[:limit])


def member_names(project: Project) -> list[str]:
    """The usernames of the project's team, for the author filter's suggestions."""
    return list(Membership.objects.filter(team_id=project.team_id)
                .values_list("user__username", flat=True).order_by("user__username"))


# ---- groups

@dataclass
class Group:
    key: Any  # seed_group: the hash; config: the settings' values (a list); tag: the tag or None
    name: str
    n: int
    cells: list[str]  # per column: "mean ± std" of a metric, the shared value of a setting
    link: str | None = None

    @property
    def key_text(self) -> str:
        return json.dumps(self.key)


@dataclass
class Grouped:
    groups: list[Group]
    total: int  # groups found, of which at most MAX_GROUPS are shown
    notice: str = ""


def _group_expressions(by: str, config_keys: list[str]) -> dict[str, Any]:
    if by == "seed_group":
        return {"group_0": F("seed_group")}
    if by == "tag":
        return {"group_0": F("tags__name")}
    return {f"group_{i}": JsonValue(key) for i, key in enumerate(config_keys)}


def _group_key(by: str, row: dict, config_keys: list[str]) -> Any:
    if by == "config":
        return [row[f"group_{i}"] for i in range(len(config_keys))]
    return row["group_0"]


def grouped(runs: QuerySet[Run], columns: list[Column], *, by: str, config_keys: list[str],
            project: Project) -> Grouped:
    """The runs collapsed into groups (by seed group, by the chosen settings' values, or one
    group per team tag: a run with two tags is in both groups, a run with none in "untagged"),
    with n and, per metric column, the mean ± sample standard deviation over the group's runs
    that have it; largest groups first, at most MAX_GROUPS."""
    runs = runs.order_by()
    expressions = _group_expressions(by, config_keys)
    aggregates: dict[str, Any] = {"n": Count("pk"), "first": Min("pk")}
    metric_columns = [(i, c) for i, c in enumerate(columns) if c.kind == "metric"]
    for i, column in metric_columns:
        runs, expression = column_expression(runs, column, f"group_summary_{i}")
        aggregates[f"mean_{i}"] = Avg(expression)
        aggregates[f"has_{i}"] = Count(expression)
        if connection.vendor == "postgresql":
            aggregates[f"std_{i}"] = StdDev(expression, sample=True)
        else:  # Django's SQLite stddev fails on a group of one: from the mean of squares
            aggregates[f"square_{i}"] = Avg(ExpressionWrapper(expression * expression,
                                                              output_field=FloatField()))
    rows = list(runs.annotate(**expressions).values(*expressions).annotate(**aggregates)
                .order_by("-n", "first"))
    for row in rows:
        for i, _ in metric_columns:
            if f"square_{i}" in row:
                row[f"std_{i}"] = _sample_std(row[f"mean_{i}"], row[f"square_{i}"],
                                              row[f"has_{i}"])
    total = len(rows)
    rows = rows[:MAX_GROUPS]
    firsts = {run.pk: run for run in Run.objects.filter(pk__in=[row["first"] for row in rows])
              .select_related("experiment")}
    names = _group_names(by, rows, config_keys, firsts)
    groups = []
    for row, name in zip(rows, names):
        cells = []
        for i, column in enumerate(columns):
            if column.kind == "config":
                cells.append(MISSING)
            elif not row[f"has_{i}"]:
                cells.append(MISSING)
            else:
                has = row[f"has_{i}"]
                cell = shown(row[f"mean_{i}"])
                if has > 1 and row[f"std_{i}"] is not None:
                    cell += f" ± {shown(row[f'std_{i}'])}"
                cells.append(cell if has == row["n"] else f"{cell} (of {has})")
        key = _group_key(by, row, config_keys)
        groups.append(Group(key, name, row["n"], cells,
                            _group_link(project, by, key, config_keys)))
    notice = ""
    if total > 1 and all(group.n == 1 for group in groups):
        notice = ("Every run is its own group: nothing is grouped; group by fewer settings.")
    elif total > MAX_GROUPS:
        notice = f"Showing the {MAX_GROUPS} largest of {total} groups."
    return Grouped(groups, total, notice)


def _sample_std(mean: float | None, square: float | None, n: int) -> float | None:
    """The sample standard deviation of n values from their mean and mean square."""
    if n < 2 or mean is None or square is None:
        return None
    return math.sqrt(max(0.0, (square - mean * mean) * n / (n - 1)))


def _setting(key: str, value: Any) -> str:
    return f"{key}={shown(value)}"


def _group_names(by: str, rows: list[dict], config_keys: list[str],
                 firsts: dict[int, Run]) -> list[str]:
    """A name per group: for seed groups, the settings in which the group's runs differ from
    other groups' (read from one run of each), else its experiment's name; for settings, their
    values; for tags, the tag."""
    if by == "tag":
        return [row["group_0"] or "untagged" for row in rows]
    if by == "config":
        return [", ".join(_setting(key, row[f"group_{i}"]) for i, key in enumerate(config_keys))
                for row in rows]
    configs = [(firsts[row["first"]].config or {}) if row["group_0"] else {} for row in rows]
    keys = sorted({key for config in configs for key in config} - NOT_THE_SETTING)
    differing = [key for key in keys
                 if len({json.dumps(config.get(key), sort_keys=True) for config in configs}) > 1]
    names = []
    for row, config in zip(rows, configs):
        run = firsts[row["first"]]
        if not row["group_0"]:
            names.append(f"{run.experiment.name} (no settings)")
            continue
        parts = [_setting(key, config.get(key)) for key in differing[:4]]
        if len(differing) > 4:
            parts.append(f"and {len(differing) - 4} more settings")
        names.append(", ".join(parts) or run.experiment.name)
    return names


def _group_link(project: Project, by: str, key: Any, settings: list[str]) -> str:
    """The group's chart on the groups page: the same grouping, the group picked by its id
    there; for chosen settings, the grouping alone, since that page writes the settings' values
    its own way."""
    url = reverse("groups:groups", args=[project.pk])
    if by == "config":
        return f"{url}?{urlencode([('by', 'settings'), *[('key', k) for k in settings]])}"
    theirs, own_key = ("seed", key) if by == "seed_group" else ("tag", key or MISSING)
    return f"{url}?{urlencode([('by', theirs), ('group', group_id(theirs, own_key))])}"


def group_runs(runs: QuerySet[Run], *, by: str, config_keys: list[str], key: Any) -> QuerySet:
    """The runs of one group, as `grouped` formed it."""
    if by == "seed_group":
        return runs.filter(seed_group=key if isinstance(key, str) else "")
    if by == "tag":
        if key is None:
            return runs.filter(~Exists(RunTag.objects.filter(run=OuterRef("pk"))))
        return runs.filter(Exists(RunTag.objects.filter(run=OuterRef("pk"), name=str(key))))
    values = key if isinstance(key, list) and len(key) == len(config_keys) else []
    if not values:
        return runs.none()
    for i, (setting, value) in enumerate(zip(config_keys, values)):
        alias = f"group_value_{i}"
        runs = runs.annotate(**{alias: JsonValue(setting)})
        runs = runs.filter(**({f"{alias}__isnull": True} if value is None else {alias: value}))
    return runs
