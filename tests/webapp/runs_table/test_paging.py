"""Keyset pages of the runs table: walking forward then back over every order never repeats or
skips a run, ties in the sort value included; runs without a value come last either way; a page
link that rlab did not make is a 400 that says so."""

from __future__ import annotations

import html
import math
import re
from datetime import timedelta

import pytest
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from webapp.runs import ingestion
from webapp.runs.models import MetricSummary, Run
from webapp.runs_table.paging import CursorError, cursor_read
from webapp.runs_table.selectors import project_runs, runs_page, sort_for

pytestmark = pytest.mark.django_db

SORTS = ["created", "name", "experiment", "status", "author", "duration", "config:seed",
         "config:learning_rate", "metric:last:loss", "metric:min:loss", "metric:mean:2:loss"]


@pytest.fixture
def many(project, experiment, user):
    """23 runs: created at only 4 distinct moments, 5 loss values,
    seeds 0..3, 2 statuses, durations of 3 kinds or none: every order has long ties.
    (2 runs have no loss.)"""
    moment = timezone.now()
    runs = Run.objects.bulk_create([
        Run(experiment=experiment, number=n + 1, launched_by=user,
            config={"seed": n % 4, "learning_rate": [1e-5, 3e-5, "x"][n % 3]},
            status="succeeded" if n % 2 else "failed")
        for n in range(23)])
    for n, run in enumerate(runs):
        start = moment - timedelta(hours=1)
        Run.objects.filter(pk=run.pk).update(
            created_at=moment - timedelta(minutes=n % 4), started_at=start,
            finished_at=None if n % 4 == 0 else start + timedelta(seconds=n % 3))
    for n, run in enumerate(runs):
        if n % 8 != 7:
            ingestion.metrics_ingest(run_id=run.pk, points=[
                ingestion.MetricSample("loss", step, float(n % 5), moment) for step in (1, 2)])
    return runs


def walk(project, sort) -> tuple[list[list[int]], list[list[int]]]:
    """Every page forward from the first, then every page back from the last."""
    runs = project_runs(project)
    forward, page = [], runs_page(runs, sort, None, size=4)
    forward.append([run.pk for run in page.rows])
    while page.next_cursor and len(forward) < 10:
        page = runs_page(runs, sort, page.next_cursor, size=4)
        forward.append([run.pk for run in page.rows])
    backward = [forward[-1]]
    while page.previous_cursor and len(backward) < 10:
        page = runs_page(runs, sort, page.previous_cursor, size=4)
        backward.append([run.pk for run in page.rows])
    return forward, backward


@pytest.mark.parametrize("ascending", [True, False])
@pytest.mark.parametrize("sort_id", SORTS)
def test_pages_never_repeat_or_skip_a_run(project, many, sort_id, ascending):
    sort = sort_for(sort_id, ascending)
    forward, backward = walk(project, sort)
    seen = [pk for page in forward for pk in page]
    assert sorted(seen) == sorted(run.pk for run in many)
    assert backward == forward[::-1]
    assert all(len(page) == 4 for page in forward[:-1])


@pytest.mark.parametrize("ascending", [True, False])
def test_runs_without_the_metric_come_last_whichever_way(project, many, ascending):
    forward, _ = walk(project, sort_for("metric:last:loss", ascending))
    order = [pk for page in forward for pk in page]
    values = {s.run_id: s.last_value for s in MetricSummary.objects.filter(key="loss")}
    shown = [values.get(pk) for pk in order]
    numbers = [v for v in shown if v is not None]
    assert shown[len(numbers):] == [None, None]
    assert numbers == sorted(numbers, reverse=not ascending)


def test_the_mean_of_the_last_points_orders_its_own_way(project, many):
    forward, _ = walk(project, sort_for("metric:mean:2:loss", False))
    order = [pk for page in forward for pk in page]
    first = Run.objects.get(pk=order[0])
    assert (many.index(first)) % 5 == 4


def url(project, query: str) -> str:
    return f"{reverse('runs_table:table', args=[project.pk])}?{query}"


def test_a_forged_cursor_is_a_400_that_says_so(signed_in, project, many):
    response = signed_in.get(url(project, "after=eyJzIjoiY3JlYXRlZCJ9:forged:sig"))
    assert response.status_code == 400
    assert "damaged or was not made by rlab" in response.content.decode()


def test_a_cursor_of_another_order_is_a_400(signed_in, project, many):
    page = runs_page(project_runs(project), sort_for("status", True), None, size=4)
    response = signed_in.get(url(project, f"sort=name&order=asc&after={page.next_cursor}"))
    assert response.status_code == 400
    assert "another order" in response.content.decode()


@pytest.mark.parametrize("value", ["not a time", 12, None])
def test_a_signed_cursor_with_a_bad_value_is_refused(value):
    sort = sort_for("created", True)
    text = signing.dumps({"s": "created", "a": True, "b": False, "v": value, "i": "1"},
                         salt="runs_table.cursor", compress=True)
    with pytest.raises(CursorError):
        cursor_read(sort, text)


def test_a_signed_metric_cursor_with_nan_is_refused():
    text = signing.dumps({"s": "metric:last:loss", "a": True, "b": False, "v": math.nan, "i": 1},
                         salt="runs_table.cursor", compress=True)
    with pytest.raises(CursorError):
        cursor_read(sort_for("metric:last:loss", True), text)


def test_next_and_previous_links_travel_with_the_filters(signed_in, project, many, monkeypatch):
    monkeypatch.setattr("webapp.runs_table.selectors.PAGE_SIZE", 5)
    first = signed_in.get(url(project, "status=failed&sort=name&order=asc")).content.decode()
    assert 'id="previous-page"' not in first and 'id="first-page"' not in first
    link = re.search(r'id="next-page" href="\?([^"]+)"', first).group(1)
    assert "status=failed" in link and "sort=name" in link
    second = signed_in.get(url(project, html.unescape(link))).content.decode()
    assert 'id="previous-page"' in second and 'id="first-page"' in second
    assert set(re.findall(r'data-run="(\d+)"', first)).isdisjoint(
        re.findall(r'data-run="(\d+)"', second))
