"""Group charts over ragged steps: runs' points on common buckets, each group's mean with its
band, and how many runs each point averages (webapp.groups.aligned)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from webapp.groups.aligned import BOOTSTRAP_REPS, group_chart
from webapp.groups.grouping import Group

pytestmark = pytest.mark.django_db

KEY = "reward/mean"


@pytest.fixture
def ragged(make_run):
    """A logs every step 0..9 (value = step), B every third step, C from step 5 on."""
    a = make_run({"seed": 1}, points={KEY: {s: float(s) for s in range(10)}})
    b = make_run({"seed": 2}, points={KEY: {0: 10.0, 3: 20.0, 6: 30.0, 9: 40.0}})
    c = make_run({"seed": 3}, points={KEY: {s: 100.0 for s in range(5, 10)}})
    return Group(id="g", name="g", runs=[a, b, c])


def at(chart, step: int) -> dict:
    i = chart.steps.index(step)
    band = chart.bands[0]
    return {"mean": band.mean[i], "lower": band.lower[i], "upper": band.upper[i], "n": band.n[i]}


def test_ragged_steps_average_only_the_runs_that_report_there(ragged):
    chart = group_chart([ragged], KEY, band="minmax")

    assert chart.width == 1 and chart.steps == list(range(10))
    assert chart.bands[0].n == [2, 1, 1, 2, 1, 2, 3, 2, 2, 3]
    assert at(chart, 0) == {"mean": 5.0, "lower": 0.0, "upper": 10.0, "n": 2}
    assert at(chart, 1) == {"mean": 1.0, "lower": 1.0, "upper": 1.0, "n": 1}
    assert at(chart, 5) == {"mean": 52.5, "lower": 5.0, "upper": 100.0, "n": 2}
    assert at(chart, 9)["mean"] == pytest.approx((9 + 40 + 100) / 3)


def test_the_std_band_is_the_sample_deviation_and_a_lone_run_has_none(ragged):
    chart = group_chart([ragged], KEY, band="std")

    spread = np.std([6.0, 30.0, 100.0], ddof=1)
    assert at(chart, 6)["lower"] == pytest.approx(np.mean([6, 30, 100]) - spread)
    assert at(chart, 6)["upper"] == pytest.approx(np.mean([6, 30, 100]) + spread)
    assert at(chart, 1)["lower"] is None and at(chart, 1)["upper"] is None


def test_the_bootstrap_band_equals_scipys_own_interval_per_bucket(ragged):
    chart = group_chart([ragged], KEY, band="ci")

    for step, values in {0: [0.0, 10.0], 6: [6.0, 30.0, 100.0], 8: [8.0, 100.0]}.items():
        direct = stats.bootstrap((values,), np.mean, n_resamples=BOOTSTRAP_REPS,
                                 method="percentile", confidence_level=0.95,
                                 rng=np.random.default_rng(0)).confidence_interval
        assert at(chart, step)["lower"] == pytest.approx(direct.low)
        assert at(chart, step)["upper"] == pytest.approx(direct.high)
    assert at(chart, 1)["lower"] is None


def test_wide_ranges_share_power_of_two_buckets_with_last_or_mean_values(make_run):
    a = make_run({"seed": 1}, points={KEY: {s: float(s) for s in range(3000)}})
    b = make_run({"seed": 2}, points={KEY: {1: 100.0, 6: 200.0}})
    group = Group(id="g", name="g", runs=[a, b])

    last = group_chart([group], KEY, band="minmax", reduce="last")
    mean = group_chart([group], KEY, band="minmax", reduce="mean")

    assert last.width == 4 and last.steps[:3] == [0, 4, 8] and len(last.steps) == 750
    assert last.bands[0].mean[:3] == [(3 + 100) / 2, (7 + 200) / 2, 11.0]
    assert last.bands[0].n[:3] == [2, 2, 1]  # nothing carried into B's empty bucket
    assert mean.bands[0].mean[:3] == [(1.5 + 100) / 2, (5.5 + 200) / 2, 9.5]


def test_nan_and_infinite_points_are_left_out(make_run):
    a = make_run({"seed": 1}, points={KEY: {0: 1.0, 1: math.nan}})
    b = make_run({"seed": 2}, points={KEY: {0: 3.0, 1: math.inf}})
    c = make_run({"seed": 3}, points={KEY: {1: 5.0}})

    chart = group_chart([Group(id="g", name="g", runs=[a, b, c])], KEY)

    assert chart.bands[0].mean == [2.0, 5.0] and chart.bands[0].n == [2, 1]


def test_several_groups_share_one_step_axis(make_run):
    a = make_run({"seed": 1}, points={KEY: {0: 1.0, 2: 1.0}})
    b = make_run({"seed": 1}, points={KEY: {1: 4.0}})
    first, second = Group(id="1", name="1", runs=[a]), Group(id="2", name="2", runs=[b])

    chart = group_chart([first, second], KEY)

    assert chart.steps == [0, 1, 2]
    assert [band.mean for band in chart.bands] == [[1.0, None, 1.0], [None, 4.0, None]]


def test_a_metric_no_run_logged_gives_an_empty_chart(ragged):
    assert group_chart([ragged], "loss/none").steps == []
