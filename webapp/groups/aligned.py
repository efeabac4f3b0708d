"""A group's metric over aligned steps: each group's mean over its runs, with a band.

Runs log at different steps, so their points are put on common buckets first: widths are
powers of two, at most TARGET_BUCKETS buckets over the steps of all the charted runs, and a
bucket covers the steps [b·width, (b+1)·width), as in webapp.runs.metric_series. A run's value
in a bucket is its last point there (or the mean of its points there); the database computes it,
one row per (run, bucket), so 10 runs × 100k steps come to the web process as 10k numbers.
Nothing is carried across a gap: a bucket where only some runs report averages those, and says
how many (`n`). Across runs numpy takes the mean and the band:

- std: mean ± the sample standard deviation (n ≥ 2);
- minmax: the lowest and highest run;
- ci: a 95% bootstrap interval of the mean (scipy.stats.bootstrap, percentile method, a fixed
  seed), vectorised over all the buckets that have the same n (n ≥ 2).

Points that are NaN or ±inf are left out, as charts leave them out. A bucket's point sits at
the bucket's first step. Buckets of ended runs are kept in Django's cache: they never change.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from scipy import stats

from webapp.groups.grouping import Group
from webapp.runs.metric_series import bucket_width
from webapp.runs.models import MetricPoint, Run

TABLE = MetricPoint._meta.db_table
BANDS = {"std": "mean ± std", "minmax": "min–max", "ci": "95% bootstrap CI of the mean"}
REDUCES = {"last": "last point in a bucket", "mean": "mean of a bucket's points"}
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 0
CACHE_SECONDS = 24 * 3600
_FINITE = 1.7976931348623157e308

RunBuckets = dict[int, float]  # bucket index (step // width) -> the run's value there


@dataclass(frozen=True)
class Band:
    """One group's line and band on the chart's steps; None where no run of it reports."""

    group: Group
    mean: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    n: list[int]


@dataclass(frozen=True)
class GroupChart:
    metric: str
    width: int
    steps: list[int]
    bands: list[Band]

    def as_json(self, band: str, reduce: str) -> dict:
        return {"metric": self.metric, "width": self.width, "band": band, "reduce": reduce,
                "steps": self.steps,
                "groups": [{"id": b.group.id, "name": b.group.name, "runs": b.group.n,
                            "mean": b.mean, "lower": b.lower, "upper": b.upper, "n": b.n}
                           for b in self.bands]}


def group_chart(groups: Sequence[Group], metric: str, *, band: str = "std",
                reduce: str = "last") -> GroupChart:
    """The groups' mean and band of `metric` on buckets common to all of them."""
    runs = {run.pk: run for group in groups for run in group.runs}
    spans = _spans(list(runs), metric)
    if not spans:
        return GroupChart(metric=metric, width=1, steps=[], bands=[])
    first = min(lo for lo, _ in spans.values())
    width = bucket_width(first, max(hi for _, hi in spans.values()))
    buckets = _run_buckets([runs[run_id] for run_id in spans], spans, metric, width, reduce)
    every = sorted({b for per_run in buckets.values() for b in per_run})
    column = {b: i for i, b in enumerate(every)}
    bands = []
    for group in groups:
        values = np.full((group.n, len(every)), np.nan)
        for row, run in enumerate(group.runs):
            for b, value in buckets.get(run.pk, {}).items():
                values[row, column[b]] = value
        bands.append(_band(group, values, band))
    return GroupChart(metric=metric, width=width, steps=[b * width for b in every], bands=bands)


def _band(group: Group, values: np.ndarray, kind: str) -> Band:
    """Mean and band across the rows of `values` (runs × buckets, NaN where a run has no
    point)."""
    n = np.sum(~np.isnan(values), axis=0)
    some = n > 0
    mean = np.full(values.shape[1], np.nan)
    mean[some] = np.nanmean(values[:, some], axis=0)
    lower = np.full(values.shape[1], np.nan)
    upper = np.full(values.shape[1], np.nan)
    if kind == "minmax":
        lower[some] = np.nanmin(values[:, some], axis=0)
        upper[some] = np.nanmax(values[:, some], axis=0)
    elif kind == "std":
        spread = n >= 2
        std = np.nanstd(values[:, spread], axis=0, ddof=1)
        lower[spread] = mean[spread] - std
        upper[spread] = mean[spread] + std
    else:
        lower, upper = bootstrap_mean_interval(values, n)
    return Band(group=group, mean=_listed(mean), lower=_listed(lower), upper=_listed(upper),
                n=n.tolist())


def bootstrap_mean_interval(values: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `values` (runs × buckets, NaN where a run has no point) with n ≥ 2 points:
    the 95% percentile bootstrap interval of their mean; NaN elsewhere. Buckets with the same n
    are resampled together, in one vectorised call."""
    lower = np.full(values.shape[1], np.nan)
    upper = np.full(values.shape[1], np.nan)
    for count in np.unique(n[n >= 2]):
        columns = np.flatnonzero(n == count)
        # each column's finite values, in row order: (buckets, count)
        picked = values[:, columns].T
        samples = picked[~np.isnan(picked)].reshape(len(columns), int(count))
        result = stats.bootstrap(
            (samples,), np.mean, axis=-1, vectorized=True, n_resamples=BOOTSTRAP_REPS,
            batch=max(1, 2_000_000 // (len(columns) * int(count))), method="percentile",
            confidence_level=0.95, rng=np.random.default_rng(BOOTSTRAP_SEED))
        lower[columns] = result.confidence_interval.low
        upper[columns] = result.confidence_interval.high
    return lower, upper


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(value) else float(value) for value in values.tolist()]


def _spans(run_ids: list[int], metric: str) -> dict[int, tuple[int, int]]:
    """Each run's first and last step of `metric`; runs without it are left out. Two index
    probes per run."""
    if not run_ids:
        return {}
    values = ", ".join(["(CAST(%s AS BIGINT))"] * len(run_ids))
    with connection.cursor() as cursor:
        cursor.execute(f"""
            WITH r(id) AS (VALUES {values})
            SELECT r.id,
              (SELECT min(step) FROM {TABLE} WHERE run_id = r.id AND key = %s),
              (SELECT max(step) FROM {TABLE} WHERE run_id = r.id AND key = %s)
            FROM r""", [*run_ids, metric, metric])
        return {run_id: (lo, hi) for run_id, lo, hi in cursor.fetchall() if lo is not None}


def _run_buckets(runs: list[Run], spans: dict[int, tuple[int, int]], metric: str, width: int,
                 reduce: str) -> dict[int, RunBuckets]:
    """Each run's value per bucket: ended runs' from the cache where it has them, the others
    from one query."""
    keys = {run.pk: _cache_key(run, metric, width, reduce) for run in runs if run.is_terminal}
    found = cache.get_many(list(keys.values()))
    buckets = {run_id: found[key] for run_id, key in keys.items() if key in found}
    to_read = [run.pk for run in runs if run.pk not in buckets]
    if reduce == "last" and connection.vendor == "postgresql":
        fresh = _last_per_bucket({run_id: spans[run_id] for run_id in to_read}, metric, width)
    else:
        fresh = _aggregate(to_read, metric, width, reduce,
                           min((spans[run_id][0] for run_id in to_read), default=0))
    buckets.update(fresh)
    cache.set_many({keys[run_id]: fresh.get(run_id, {}) for run_id in to_read if run_id in keys},
                   timeout=CACHE_SECONDS)
    return buckets


def _cache_key(run: Run, metric: str, width: int, reduce: str) -> str:
    digest = hashlib.sha1(metric.encode()).hexdigest()
    return f"rlab:group-buckets:v1:{run.pk}:{run.created_at.timestamp()}:{width}:{reduce}:{digest}"


def _last_per_bucket(spans: dict[int, tuple[int, int]], metric: str,
                     width: int) -> dict[int, RunBuckets]:
    """Each run's last finite point per bucket, found by one backward probe of the (run, key,
    step) index per run and bucket: at most TARGET_BUCKETS probes a run, however many points
    it has (10 runs × 100k steps: 10k probes instead of 1M rows aggregated)."""
    if not spans:
        return {}
    rows = ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(spans))
    params = [value for run_id, (lo, hi) in spans.items()
              for value in (run_id, lo // width, hi // width)]
    result: dict[int, RunBuckets] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(f"""
            WITH r(id, first_bucket, last_bucket) AS (VALUES {rows})
            SELECT r.id, b.b, (
                SELECT m.value FROM {TABLE} m
                WHERE m.run_id = r.id AND m.key = %s
                  AND m.step BETWEEN b.b * %s AND b.b * %s + %s - 1
                  AND m.value BETWEEN %s AND %s
                ORDER BY m.step DESC LIMIT 1)
            FROM r CROSS JOIN LATERAL generate_series(r.first_bucket, r.last_bucket) AS b(b)""",
            [*params, metric, width, width, width, -_FINITE, _FINITE])
        for run_id, b, value in cursor.fetchall():
            if value is not None:
                result.setdefault(run_id, {})[b] = float(value)
    return result


def _aggregate(run_ids: list[int], metric: str, width: int, reduce: str,
               first: int) -> dict[int, RunBuckets]:
    """One row per (run, bucket) with the run's value there. Steps are offset by a multiple of
    the width to make them non-negative, so SQL's integer division (which truncates) agrees
    with Python's floor division."""
    if not run_ids:
        return {}
    origin = first // width * width
    ids = ", ".join(["%s"] * len(run_ids))
    bucket = "(m.step - CAST(%s AS BIGINT)) / CAST(%s AS BIGINT)"
    if connection.vendor == "postgresql":
        value = ("(max(ARRAY[CAST(m.step AS double precision), m.value]))[2]"
                 if reduce == "last" else "avg(m.value)")
    else:
        # SQLite takes a bare column from the row that the query's one max() picks
        value = "m.value, max(m.step)" if reduce == "last" else "avg(m.value)"
    sql = f"""
        SELECT m.run_id, {bucket} AS bucket, {value} FROM {TABLE} m
        WHERE m.run_id IN ({ids}) AND m.key = %s AND m.value BETWEEN %s AND %s
        GROUP BY m.run_id, bucket"""
    params = [origin, width, *run_ids, metric, -_FINITE, _FINITE]
    result: dict[int, RunBuckets] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL jit = off")  # it compiles for longer than this runs
        cursor.execute(sql, params)
        for run_id, b, v, *_ in cursor.fetchall():
            result.setdefault(run_id, {})[origin // width + b] = float(v)
    return result
