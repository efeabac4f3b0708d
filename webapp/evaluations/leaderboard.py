"""The project leaderboard: every evaluation result as one row of a table that can be filtered,
sorted by any column and exported. Pure functions over EvaluationResult lists, so the page and
both exports show the same rows in the same order for the same query.

Results on different datasets are not comparable (a pass@1 of 0.8 on one-digit sums says nothing
against 0.3 on GSM8K), so rows are always grouped by dataset first, datasets by name, and the
chosen column orders the rows within each dataset; the best value of a column is marked within
its dataset too.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from webapp.common.csv_cells import csv_cell
from webapp.evaluations.selectors import EvaluationResult, headline_metrics

SOURCES = {"all": "jobs and during training", "jobs": "evaluation jobs only"}
ORDERS = ("asc", "desc")
DEFAULT_SORT = "pass@1"
# The columns that are not metrics, and the order each sorts in when first clicked.
FIXED_COLUMNS = {"model": "asc", "size": "desc", "when": "desc"}
# Counts of what an evaluation covered: shown as "prompts × samples", not as metric columns.
SIZE_KEYS = ("prompts", "samples")
# Metrics where a higher value is better; others (length/mean) get no "best" mark, since a
# shorter or longer answer is not better in itself.
HIGHER_IS_BETTER_PREFIXES = ("pass@", "maj@", "avg@", "reward/")


@dataclass(frozen=True)
class Query:
    """What the leaderboard shows, read from (and written back to) the page's GET parameters."""

    dataset: str = ""  # a dataset label; empty: every dataset, grouped
    source: str = "all"  # a key of SOURCES
    best_per_model: bool = False  # only each model's best result per dataset
    sort: str = DEFAULT_SORT  # a metric key or a key of FIXED_COLUMNS
    order: str = "desc"  # "asc" or "desc"; missing values come last either way

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Query:
        """A query from GET parameters; a value it does not know falls back to the default, as a
        shared link from an older page should still open."""
        sort = (params.get("sort") or "").strip() or DEFAULT_SORT
        if sort not in FIXED_COLUMNS and not _metric_key(sort):
            sort = DEFAULT_SORT
        order = params.get("order") or _default_order(sort)
        return cls(dataset=params.get("dataset") or "",
                   source=params.get("source") if params.get("source") in SOURCES else "all",
                   best_per_model=params.get("best") == "1",
                   sort=sort, order=order if order in ORDERS else _default_order(sort))

    @property
    def descending(self) -> bool:
        return self.order == "desc"

    def params(self) -> dict[str, str]:
        """The parameters that differ from the defaults, so links stay short."""
        params = {"dataset": self.dataset, "source": "" if self.source == "all" else self.source,
                  "best": "1" if self.best_per_model else "",
                  "sort": "" if self.sort == DEFAULT_SORT else self.sort,
                  "order": "" if self.order == _default_order(self.sort) else self.order}
        return {key: value for key, value in params.items() if value}

    def urlencode(self) -> str:
        return urlencode(self.params())

    def filters(self) -> dict[str, Any]:
        """The filters and order as the JSON export records them."""
        return {"dataset": self.dataset or None, "source": self.source,
                "best_per_model": self.best_per_model, "sort": self.sort, "order": self.order}


@dataclass(frozen=True)
class Column:
    """A sortable column; `query` is the page's query with this column's sort (the order flips
    when it already sorts by it)."""

    key: str
    label: str
    query: str
    order: str = ""  # "asc" or "desc" when the table is sorted by this column


@dataclass(frozen=True)
class Cell:
    key: str
    value: float | None
    best: bool = False  # the best value of its column within its dataset


@dataclass(frozen=True)
class Row:
    result: EvaluationResult
    cells: list[Cell]  # one per metric column, in the columns' order

    @property
    def source(self) -> str:
        """"job" for an evaluation job, "training" for a periodic evaluation during training."""
        return "job" if self.result.is_job else "training"

    @property
    def model_url(self) -> str:
        """Where the model came from: the training run of a checkpoint (or of a periodic
        evaluation); the job itself for a base model."""
        run = self.result.run
        checkpoint = run.evaluated_checkpoint if run.is_evaluation else None
        return (checkpoint.run if checkpoint is not None else run).get_absolute_url()

    @property
    def prompts(self) -> int | None:
        return _count(self.result.metrics.get("prompts"))

    @property
    def samples(self) -> int | None:
        return _count(self.result.metrics.get("samples"))


@dataclass(frozen=True)
class Group:
    dataset: str
    rows: list[Row]


@dataclass(frozen=True)
class Leaderboard:
    query: Query
    column: dict[str, Column]  # the sortable columns by key: FIXED_COLUMNS and each metric
    metric_keys: list[str]  # every metric present in the shown rows, in display order
    groups: list[Group]  # by dataset name; one group when a dataset is picked
    datasets: list[str]  # every dataset with a result, for the filter
    total: int  # results before filtering

    @property
    def rows(self) -> list[Row]:
        return [row for group in self.groups for row in group.rows]

    @property
    def metric_columns(self) -> list[Column]:
        return [self.column[key] for key in self.metric_keys]


def build_leaderboard(results: list[EvaluationResult], query: Query) -> Leaderboard:
    """The table `query` asks for: filtered, reduced to each model's best when asked, grouped by
    dataset and sorted within each group, with each metric's best value marked per group."""
    shown = [r for r in results
             if (not query.dataset or r.dataset == query.dataset)
             and (query.source == "all" or r.is_job)]
    if query.best_per_model:
        shown = best_per_model(shown, _ranking_key(query.sort))
    keys = metric_keys(r.metrics for r in shown)
    by_dataset: dict[str, list[EvaluationResult]] = {}
    for result in shown:
        by_dataset.setdefault(result.dataset, []).append(result)
    groups = [Group(dataset=name, rows=_marked_rows(
        sort_results(by_dataset[name], query.sort, descending=query.descending), keys))
        for name in sorted(by_dataset, key=str.casefold)]
    return Leaderboard(query=query, column=_columns(query, keys), metric_keys=keys,
                       groups=groups, datasets=sorted({r.dataset for r in results},
                                                      key=str.casefold),
                       total=len(results))


def metric_keys(metrics: Iterable[Mapping[str, float]]) -> list[str]:
    """Every metric key of the results' `metrics`: pass@k by k, maj@k by k, avg@n, then
    reward/mean, length/mean and any others by name.

    >>> metric_keys([{"length/mean": 9.0, "maj@8": 0.5, "pass@8": 0.9, "samples": 8},
    ...              {"pass@1": 0.4, "reward/mean": 0.4, "avg@8": 0.4, "prompts": 48}])
    ['pass@1', 'pass@8', 'maj@8', 'avg@8', 'reward/mean', 'length/mean']
    """
    present = {key: 0.0 for m in metrics for key in m if key not in SIZE_KEYS}
    headline = [key for key, _ in headline_metrics(present)]
    first = [key for key in ("reward/mean", "length/mean") if key in present]
    return headline + first + sorted(set(present) - set(headline) - set(first))


def sort_results(results: list[EvaluationResult], key: str, *,
                 descending: bool) -> list[EvaluationResult]:
    """`results` by the column `key`; those without a value come last in either order, and ties
    go to the newest result."""
    value = _sort_value(key)
    newest_first = sorted(results, key=lambda r: (r.wall_time, r.run.pk, r.step), reverse=True)
    present = [r for r in newest_first if value(r) is not None]
    missing = [r for r in newest_first if value(r) is None]
    return sorted(present, key=value, reverse=descending) + missing  # stable: ties keep order


def best_per_model(results: list[EvaluationResult], key: str) -> list[EvaluationResult]:
    """Each model's highest result by the metric `key` on each dataset (the newest among equals;
    a model with no such value keeps its newest result). A training run's checkpoints and
    periodic evaluations count as one model: this answers "which step of this run was best"."""
    best: dict[tuple[tuple[str, Any], str], EvaluationResult] = {}
    for result in sort_results(results, key, descending=True):
        best.setdefault((lineage(result), result.dataset), result)
    return list(best.values())


def lineage(result: EvaluationResult) -> tuple[str, Any]:
    """What a result measured, apart from the step: the training run of a checkpoint or of a
    periodic evaluation, or the model named by a job."""
    run = result.run
    if not run.is_evaluation:
        return ("run", run.pk)
    if run.evaluated_checkpoint is not None:
        return ("run", run.evaluated_checkpoint.run_id)
    return ("model", str(run.config.get("model", "")))


def higher_is_better(key: str) -> bool:
    return key.startswith(HIGHER_IS_BETTER_PREFIXES)


# ---------------------------------------------------------------------------- export


def export_fields(board: Leaderboard) -> list[str]:
    return ["model", "dataset", "step", "source", "run_id", *board.metric_keys, "prompts",
            "samples", "evaluated_at"]


def export_records(board: Leaderboard) -> list[dict[str, Any]]:
    """One record per row in the page's order: metrics as numbers (None where not measured),
    the time in ISO 8601."""
    records = []
    for row in board.rows:
        result = row.result
        record: dict[str, Any] = {"model": result.model, "dataset": result.dataset,
                                  "step": result.step, "source": row.source,
                                  "run_id": result.run.pk}
        record.update((cell.key, cell.value) for cell in row.cells)
        record.update(prompts=row.prompts, samples=row.samples,
                      evaluated_at=result.wall_time.isoformat())
        records.append(record)
    return records


def export_csv(board: Leaderboard) -> str:
    """A header row, then one line per row; an empty cell where a metric was not measured."""
    buffer = io.StringIO()
    names = export_fields(board)
    writer = csv.writer(buffer)
    writer.writerow(csv_cell(name) for name in names)
    for record in export_records(board):
        writer.writerow(csv_cell(record[name]) for name in names)
    return buffer.getvalue()


def export_json(board: Leaderboard) -> dict[str, Any]:
    return {"filters": board.query.filters(), "columns": export_fields(board),
            "results": export_records(board)}


# ---------------------------------------------------------------------------- helpers


def _metric_key(key: str) -> bool:
    """A plausible metric name ("pass@4", "reward/mean"): letters, digits and "@/_.-" only, so
    a parameter never carries arbitrary text into the page's links."""
    return 0 < len(key) <= 100 and all(c.isalnum() or c in "@/_.-" for c in key)


def _default_order(key: str) -> str:
    return FIXED_COLUMNS.get(key, "desc")


def _ranking_key(sort: str) -> str:
    """The metric that decides "best": the sorted one when higher is better, else pass@1."""
    return sort if higher_is_better(sort) else DEFAULT_SORT


def _sort_value(key: str) -> Callable[[EvaluationResult], Any]:
    """What a column sorts by; None for a result without it."""
    if key == "model":
        return lambda r: r.model.casefold()
    if key == "size":
        return _size
    if key == "when":
        return lambda r: r.wall_time
    return lambda r: _finite(r.metrics.get(key))


def _size(result: EvaluationResult) -> float | None:
    """Samples scored in all: prompts × samples per prompt."""
    prompts, samples = (result.metrics.get(key) for key in SIZE_KEYS)
    return prompts * samples if prompts is not None and samples is not None else None


def _marked_rows(results: list[EvaluationResult], keys: list[str]) -> list[Row]:
    """Rows with the best value of each higher-is-better metric marked, where at least two
    results of the group have that metric (a lone result is not "best" of anything)."""
    best: dict[str, float] = {}
    for key in filter(higher_is_better, keys):
        values = [value for r in results if (value := _finite(r.metrics.get(key))) is not None]
        if len(values) >= 2:
            best[key] = max(values)
    rows = []
    for result in results:
        values = {key: _finite(result.metrics.get(key)) for key in keys}
        rows.append(Row(result=result, cells=[
            Cell(key=key, value=value, best=value is not None and value == best.get(key))
            for key, value in values.items()]))
    return rows


def _columns(query: Query, keys: list[str]) -> dict[str, Column]:
    labels = {"model": "Model", "size": "Prompts × samples", "when": "Evaluated"}
    columns = {}
    for key in [*FIXED_COLUMNS, *keys]:
        active = query.sort == key
        order = ("asc" if query.descending else "desc") if active else _default_order(key)
        columns[key] = Column(key=key, label=labels.get(key, key),
                              query=replace(query, sort=key, order=order).urlencode(),
                              order=query.order if active else "")
    return columns


def _finite(value: float | None) -> float | None:
    """A metric's value, None for a missing or non-finite one (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def _count(value: float | None) -> int | None:
    return int(value) if value is not None and math.isfinite(value) else None
