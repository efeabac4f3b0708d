"""Statistics of groups against rliable's own functions called directly on the same scores
with the same seed (webapp.groups.statistics)."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from rliable import library, metrics

from tests.webapp.groups.conftest import log
from webapp.groups.grouping import Group
from webapp.groups.statistics import (
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    PROFILE_REPS,
    Reading,
    groups_statistics,
    improvement,
    iqm,
    read_scores,
)

pytestmark = pytest.mark.django_db

KEY = "eval/accuracy"
A_SCORES = [0.61, 0.55, 0.72, 0.58, 0.66, 0.69]
B_SCORES = [0.41, 0.52, 0.47, 0.39, 0.50]


def group(make_run, name: str, finals: list[float], *, key: str = KEY) -> Group:
    """Runs whose `key` goes 0 at step 0, then finals[i] at steps 10 and 20."""
    runs = [make_run({"seed": i, "method": name},
                     points={key: {0: 0.0, 10: value, 20: value}})
            for i, value in enumerate(finals)]
    return Group(id=name, name=name, runs=runs)


def rliable_interval(scores, func):
    """rliable's own estimate; it resamples with numpy's global generator, seeded here."""
    np.random.seed(BOOTSTRAP_SEED)
    points, intervals = library.get_interval_estimates({"x": scores}, func, reps=BOOTSTRAP_REPS)
    return points["x"], intervals["x"]


def test_mean_iqm_and_their_intervals_equal_rliables(make_run):
    a = group(make_run, "a", A_SCORES)

    row = groups_statistics([a], [KEY], Reading(last_k=2)).rows[0]

    scores = np.array(A_SCORES).reshape(-1, 1)
    points, intervals = rliable_interval(
        scores, lambda x: np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)]))
    assert row.n == 6
    assert row.mean == pytest.approx(points[0]) and row.iqm == pytest.approx(points[1])
    assert row.mean_ci == pytest.approx((intervals[0][0], intervals[1][0]))
    assert row.iqm_ci == pytest.approx((intervals[0][1], intervals[1][1]))
    assert row.note == ""


def test_difference_and_probability_of_improvement_equal_rliables(make_run):
    a, b = group(make_run, "a", A_SCORES), group(make_run, "b", B_SCORES)

    rows = groups_statistics([a, b], [KEY], Reading(step=15), baseline=b).rows

    x, y = np.array(A_SCORES).reshape(-1, 1), np.array(B_SCORES).reshape(-1, 1)
    points, intervals = rliable_interval((x, y), lambda x, y: np.array([
        metrics.aggregate_mean(x) - metrics.aggregate_mean(y),
        metrics.probability_of_improvement(x, y)]))
    assert rows[0].difference == pytest.approx(np.mean(A_SCORES) - np.mean(B_SCORES))
    assert rows[0].difference_ci == pytest.approx((intervals[0][0], intervals[1][0]))
    assert rows[0].improvement == pytest.approx(points[1])
    assert rows[0].improvement_ci == pytest.approx((intervals[0][1], intervals[1][1]))
    assert rows[1].is_baseline and rows[1].difference is None


@pytest.mark.parametrize("seed", range(20))
def test_the_fast_iqm_and_improvement_equal_rliables(seed):
    generator = np.random.default_rng(seed)
    shape_x = (generator.integers(1, 12), generator.integers(1, 4))
    shape_y = (generator.integers(1, 12), shape_x[1])
    # few distinct values: many ties, and sometimes the very same scores
    x = generator.integers(0, 4, shape_x).astype(float)
    y = x.copy() if seed % 5 == 0 else generator.integers(0, 4, shape_y).astype(float)

    assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
    assert improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_one_run_has_no_interval_and_few_runs_are_flagged(make_run):
    one, three = group(make_run, "one", [0.5]), group(make_run, "three", [0.1, 0.2, 0.3])

    rows = groups_statistics([one, three], [KEY], Reading(last_k=1), baseline=one).rows

    assert rows[0].mean == 0.5 and rows[0].mean_ci is None
    assert rows[0].note == "One run: no interval (it needs two or more)."
    assert rows[1].mean_ci is not None and rows[1].note.startswith("Few runs (3)")
    assert rows[1].difference == pytest.approx(0.2 - 0.5) and rows[1].difference_ci is None


def test_runs_without_the_reading_are_left_out_and_listed(make_run):
    a = group(make_run, "a", [0.5, 0.6])
    late = make_run({"seed": 9}, points={KEY: {30: 0.9}})
    broken = make_run({"seed": 8}, points={KEY: {5: math.nan}})
    other = make_run({"seed": 7}, points={"loss/policy": {5: 1.0}})
    a.runs += [late, broken, other]

    statistics = groups_statistics([a], [KEY], Reading(step=10))

    assert statistics.rows[0].n == 2
    assert {e.run.pk: e.reason for e in statistics.excluded} == {
        late.pk: f"no {KEY} point at or before step 10",
        broken.pk: f"{KEY} is nan at step 10",
        other.pk: f"no {KEY} point at or before step 10"}


def test_a_reading_at_a_step_takes_the_last_point_at_or_before_it(make_run):
    run = make_run({"seed": 1}, points={KEY: {0: 1.0, 10: 2.0, 20: 3.0}})

    assert read_scores([run], KEY, Reading(step=15)) == {run.pk: 2.0}
    assert read_scores([run], KEY, Reading(step=20)) == {run.pk: 3.0}
    assert read_scores([run], KEY, Reading(last_k=2)) == {run.pk: 2.5}


def test_several_metrics_are_tasks_with_a_performance_profile(make_run):
    second = "eval/pass@1"
    a, b = group(make_run, "a", A_SCORES), group(make_run, "b", B_SCORES)
    for runs, values in ((a.runs, [0.3, 0.2, 0.4, 0.35, 0.25, 0.3]),
                         (b.runs, [0.1, 0.15, 0.2, 0.05, 0.1])):
        for run, value in zip(runs, values):
            log(run, second, {20: value})

    statistics = groups_statistics([a, b], [KEY, second], Reading(last_k=1), profile=True)

    scores = np.array([A_SCORES, [0.3, 0.2, 0.4, 0.35, 0.25, 0.3]]).T
    b_scores = np.array([B_SCORES, [0.1, 0.15, 0.2, 0.05, 0.1]]).T
    assert statistics.rows[0].scores.shape == (6, 2)
    assert statistics.rows[0].iqm == pytest.approx(metrics.aggregate_iqm(scores))
    profile = statistics.profile
    tau = np.array(profile["tau"])
    assert tau[0] == pytest.approx(0.05) and tau[-1] == pytest.approx(0.72)
    np.random.seed(BOOTSTRAP_SEED)
    expected, intervals = library.create_performance_profile({"a": scores, "b": b_scores}, tau,
                                                             reps=PROFILE_REPS)
    assert profile["groups"][0]["profile"] == pytest.approx(expected["a"].tolist())
    assert profile["groups"][0]["low"] == pytest.approx(intervals["a"][0].tolist())
    assert profile["groups"][1]["high"] == pytest.approx(intervals["b"][1].tolist())


def test_minmax_normalisation_scales_each_metric_over_all_runs(make_run):
    a, b = group(make_run, "a", [2.0, 4.0]), group(make_run, "b", [6.0, 10.0])

    rows = groups_statistics([a, b], [KEY], Reading(last_k=1), normalise="minmax").rows

    assert rows[0].scores.ravel().tolist() == [0.0, 0.25]
    assert rows[1].scores.ravel().tolist() == [0.5, 1.0]


def test_csv_cells_from_group_names_cannot_start_a_formula(make_run):
    a = group(make_run, "=HYPERLINK(1)", [0.5, 0.6])

    text = groups_statistics([a], [KEY], Reading(last_k=1)).as_csv()

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][0] == "'=HYPERLINK(1)" and rows[1][1] == "2"
