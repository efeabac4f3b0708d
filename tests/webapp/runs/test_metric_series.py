"""Chart series read and downsampled in SQL (webapp.runs.metric_series), the metrics.json view
that serves them and the CSV export."""

from __future__ import annotations

import csv
import doctest
import io
import math
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from webapp.runs import ingestion, metric_series, selectors, services

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def run(experiment, user):
    return services.run_launch(experiment=experiment, user=user)


def log(run, key, values: dict[int, float]) -> None:
    """Points of one metric, step -> value, each step one second after the previous."""
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=value,
                              wall_time=T0 + timedelta(seconds=step))
        for step, value in values.items()])


def as_points(columns) -> list[tuple]:
    return list(zip(*columns))


def test_doctests_pass():
    assert doctest.testmod(metric_series).failed == 0


def test_a_long_series_keeps_its_spike_its_dip_and_its_last_point(run):
    values = {step: math.sin(step / 300) for step in range(1, 50_001)}
    values[33_333] = 50.0
    values[12_345] = -50.0
    log(run, "reward/mean", values)
    read = selectors.metric_series(run, ["reward/mean"])
    steps, series_values, walls = read.series["reward/mean"]
    assert read.width == 64  # 50,000 steps in at most 1,000 buckets
    assert 1000 < len(steps) <= 2 * 1000 + 1
    assert steps == sorted(steps)
    points = as_points(read.series["reward/mean"])
    assert (33_333, 50.0, (T0 + timedelta(seconds=33_333)).timestamp()) in points
    assert (12_345, -50.0, (T0 + timedelta(seconds=12_345)).timestamp()) in points
    assert points[-1][0] == 50_000
    assert min(series_values) == -50.0 and max(series_values) == 50.0
    # Every point is a real one: its step, value and time as stored.
    assert all(values[step] == value and wall == (T0 + timedelta(seconds=step)).timestamp()
               for step, value, wall in points)


def test_every_bucket_keeps_its_lowest_and_highest_point(run):
    values = {step: float((step * 7919) % 101) for step in range(0, 4000)}
    log(run, "loss/policy", values)
    read = selectors.metric_series(run, ["loss/policy"])
    width = read.width
    kept = as_points(read.series["loss/policy"])
    by_bucket: dict[int, list[float]] = {}
    for step, value in values.items():
        by_bucket.setdefault(step // width, []).append(value)
    kept_by_bucket: dict[int, list[float]] = {}
    for step, value, _ in kept:
        kept_by_bucket.setdefault(step // width, []).append(value)
    for bucket, bucket_values in by_bucket.items():
        assert min(bucket_values) in kept_by_bucket[bucket]
        assert max(bucket_values) in kept_by_bucket[bucket]


def test_a_short_series_comes_back_whole(run):
    log(run, "kl/mean", {step: step / 10 for step in range(1, 501)})
    read = selectors.metric_series(run, ["kl/mean"])
    assert read.width == 1
    assert read.series["kl/mean"][0] == list(range(1, 501))


def test_a_zoomed_range_of_at_most_1000_steps_has_every_point(run):
    log(run, "reward/mean", {step: float(step % 17) for step in range(1, 20_001)})
    read = selectors.metric_series(run, ["reward/mean"], start=5_000, end=5_999)
    assert read.width == 1
    assert read.series["reward/mean"][0] == list(range(5_000, 6_000))
    assert read.series["reward/mean"][1] == [float(step % 17) for step in range(5_000, 6_000)]


def test_a_range_keeps_to_its_bounds(run):
    log(run, "reward/mean", {step: float(step) for step in range(1, 20_001)})
    steps = selectors.metric_series(run, ["reward/mean"], start=2_500, end=17_500
                                    ).series["reward/mean"][0]
    assert steps[0] == 2_500 and steps[-1] == 17_500


def test_points_logged_after_a_read_show_in_the_next(run):
    log(run, "reward/mean", {step: 0.0 for step in range(1, 10_001)})
    selectors.metric_series(run, ["reward/mean"])
    log(run, "reward/mean", {10_001: 9.0})
    steps, values, _ = selectors.metric_series(run, ["reward/mean"]).series["reward/mean"]
    assert steps[-1] == 10_001 and values[-1] == 9.0


def test_non_finite_values_are_null_and_do_not_hide_the_extremes(run):
    values = {step: 1.0 for step in range(1, 3_001)}
    values[1_500] = math.nan
    values[1_501] = math.inf
    values[2_000] = 7.0
    values[3_000] = math.nan  # the last point
    log(run, "loss/policy", values)
    steps, series_values, _ = selectors.metric_series(run, ["loss/policy"]).series["loss/policy"]
    assert 7.0 in series_values
    assert steps[-1] == 3_000 and series_values[-1] is None
    whole = selectors.metric_series(run, ["loss/policy"], start=1_400, end=1_600)
    points = dict(zip(*whole.series["loss/policy"][:2]))
    assert points[1_500] is None and points[1_501] is None and points[1_499] == 1.0


def test_keys_are_sorted_and_headline_metrics_come_first(run):
    for key in ("zeta/custom", "kl/mean", "alpha/x", "reward/mean"):
        log(run, key, {1: 1.0})
    assert metric_series.recorded_keys(run.pk) == ["alpha/x", "kl/mean", "reward/mean",
                                                   "zeta/custom"]
    assert selectors.metric_keys(run) == ["reward/mean", "kl/mean", "alpha/x", "zeta/custom"]


def test_key_spans_give_first_step_and_last_point_within_a_range(run):
    log(run, "reward/mean", {step: step * 2.0 for step in range(5, 51)})
    spans = metric_series.key_spans(run.pk, ["reward/mean", "absent"], start=10, end=20)
    assert list(spans) == ["reward/mean"]
    span = spans["reward/mean"]
    assert span.first == 10 and span.last[:2] == (20, 40.0)


# ------------------------------------------------------------------------------ metrics.json


def metrics_json(client, run, **params):
    response = client.get(reverse("live:metrics", args=[run.pk]), params)
    assert response.status_code == 200
    return response.json()


def test_metrics_json_has_steps_values_and_wall_times(signed_in, run):
    log(run, "reward/mean", {1: 0.1, 2: 0.2, 3: 0.3})
    data = metrics_json(signed_in, run)
    assert data["keys"] == ["reward/mean"]
    assert data["active"] is True and data["width"] == 1
    steps, values, walls = data["series"]["reward/mean"]
    assert steps == [1, 2, 3] and values == [0.1, 0.2, 0.3]
    assert walls == [(T0 + timedelta(seconds=s)).timestamp() for s in (1, 2, 3)]


def test_metrics_json_after_a_step_sends_only_newer_points(signed_in, run):
    log(run, "reward/mean", {step: float(step) for step in range(1, 5_001)})
    log(run, "kl/mean", {step: 0.5 for step in range(1, 5_001)})
    data = metrics_json(signed_in, run, after=4_990)
    assert data["keys"] == ["reward/mean", "kl/mean"]
    assert data["series"]["reward/mean"][0] == list(range(4_991, 5_001))
    assert data["series"]["kl/mean"][1] == [0.5] * 10


def test_metrics_json_reads_a_step_range_and_chosen_keys(signed_in, run):
    log(run, "reward/mean", {step: float(step) for step in range(1, 5_001)})
    log(run, "kl/mean", {step: 0.5 for step in range(1, 5_001)})
    full = metrics_json(signed_in, run)
    assert full["width"] == 8
    zoomed = metrics_json(signed_in, run, keys="kl/mean", start=100, end=299)
    assert list(zoomed["series"]) == ["kl/mean"]
    assert zoomed["keys"] == ["reward/mean", "kl/mean"]  # every key, for new charts
    assert zoomed["width"] == 1 and zoomed["series"]["kl/mean"][0] == list(range(100, 300))


def test_metrics_json_ignores_unreadable_parameters(signed_in, run):
    log(run, "reward/mean", {1: 1.0, 2: 2.0})
    data = metrics_json(signed_in, run, after="soon", start="x", end="")
    assert data["series"]["reward/mean"][0] == [1, 2]


def test_metrics_json_of_a_finished_run_is_not_active(signed_in, run):
    services.run_claim(run_id=run.pk, worker="w")
    services.run_fail(run_id=run.pk, error_message="stopped")
    assert metrics_json(signed_in, run)["active"] is False


def test_metric_names_stay_data_in_json(signed_in, run):
    key = '<script>alert("x")</script>'
    log(run, key, {1: 1.0})
    response = signed_in.get(reverse("live:metrics", args=[run.pk]))
    assert response["Content-Type"] == "application/json"
    assert response.json()["keys"] == [key]


# ------------------------------------------------------------------------------ CSV


def csv_rows(client, run, **params) -> tuple[object, list[list[str]]]:
    response = client.get(reverse("live:metrics_csv", args=[run.pk]), params)
    assert response.status_code == 200

    async def body() -> bytes:
        return b"".join([chunk async for chunk in response])

    text = async_to_sync(body)().decode()
    return response, list(csv.reader(io.StringIO(text)))


def test_csv_has_every_point_of_every_metric(signed_in, run):
    log(run, "reward/mean", {step: step / 4 for step in range(1, 4_001)})
    log(run, "kl/mean", {1: math.nan, 2: 0.25})
    response, rows = csv_rows(signed_in, run)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-metrics.csv"'
    assert rows[0] == ["key", "step", "value", "wall_time"]
    assert len(rows) == 1 + 4_000 + 2
    assert rows[1] == ["reward/mean", "1", "0.25", (T0 + timedelta(seconds=1)).isoformat()]
    assert rows[4_000] == ["reward/mean", "4000", "1000.0",
                           (T0 + timedelta(seconds=4_000)).isoformat()]
    assert rows[4_001][:3] == ["kl/mean", "1", "nan"]


def test_csv_pages_through_long_series(signed_in, run, monkeypatch):
    monkeypatch.setattr(metric_series, "CSV_PAGE", 7)
    log(run, "reward/mean", {step: float(step) for step in range(1, 22)})
    _, rows = csv_rows(signed_in, run)
    assert [int(row[1]) for row in rows[1:]] == list(range(1, 22))


def test_csv_of_chosen_keys(signed_in, run):
    log(run, "reward/mean", {1: 1.0})
    log(run, "kl/mean", {1: 2.0})
    _, rows = csv_rows(signed_in, run, keys="kl/mean")
    assert rows[1:] == [["kl/mean", "1", "2.0", (T0 + timedelta(seconds=1)).isoformat()]]


def test_csv_keeps_metric_names_from_running_as_formulas(signed_in, run):
    log(run, "=HYPERLINK(\"http://evil\")", {1: 1.0})
    _, rows = csv_rows(signed_in, run)
    assert rows[1][0] == "'=HYPERLINK(\"http://evil\")"


def test_csv_of_another_teams_run_is_404(client, run, other_user):
    client.force_login(other_user)
    assert client.get(reverse("live:metrics_csv", args=[run.pk])).status_code == 404
