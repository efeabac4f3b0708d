"""The group page, its charts' series and the statistics page: who may read them, what they
show, and their exports."""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse

from webapp.groups.grouping import Grouping, runs_group
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

KEY = "reward/mean"


@pytest.fixture
def two_methods(make_run):
    """Methods a (3 seeds) and b (2 seeds) as settings; each run's reward at steps 0..4."""
    for method, finals in (("a", [0.6, 0.7, 0.8]), ("b", [0.3, 0.4])):
        for seed, final in enumerate(finals):
            make_run({"method": method, "seed": seed},
                     points={KEY: {s: final * s / 4 for s in range(5)}})


def url(name: str, project, **params) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{reverse(name, args=[project.pk])}?{query}"


@pytest.mark.parametrize("name", ["groups:groups", "groups:series", "groups:statistics"])
def test_an_outsider_gets_404(name, project, two_methods, other_user):
    client = Client()
    client.force_login(other_user)
    assert client.get(url(name, project, metric=KEY)).status_code == 404


@pytest.mark.parametrize("name", ["groups:groups", "groups:statistics"])
def test_a_viewer_reads_the_pages(name, project, two_methods, member_of):
    client = Client()
    client.force_login(member_of("viewer"))
    assert client.get(url(name, project)).status_code == 200


def test_the_project_page_links_to_groups_and_statistics(signed_in, project):
    body = signed_in.get(project.get_absolute_url()).content.decode()
    assert f'href="{reverse("groups:groups", args=[project.pk])}"' in body
    assert f'href="{reverse("groups:statistics", args=[project.pk])}"' in body


def test_the_group_page_lists_groups_and_a_chart_panel_per_metric(signed_in, project,
                                                                  two_methods):
    body = signed_in.get(url("groups:groups", project)).content.decode()

    assert "method=a" in body and "method=b" in body
    assert f'<div class="chart-grid" data-project="{project.pk}"' in body
    assert f'<section class="chart-panel" data-panel="{KEY}">' in body


def test_a_grouping_that_splits_every_run_shows_its_message(signed_in, project, two_methods):
    body = signed_in.get(url("groups:groups", project, by="settings", key="seed,method"))
    assert "puts each of the 5 runs in a group of its own" in body.content.decode()


def test_the_series_answers_each_groups_mean_band_and_counts(signed_in, project, two_methods):
    answer = signed_in.get(url("groups:series", project, metric=KEY, band="minmax")).json()

    assert answer["steps"] == [0, 1, 2, 3, 4] and answer["band"] == "minmax"
    a, b = answer["groups"]
    assert a["name"] == "method=a" and a["runs"] == 3 and a["n"] == [3] * 5
    assert a["mean"][4] == pytest.approx(0.7)
    assert a["lower"][4] == pytest.approx(0.6) and a["upper"][4] == pytest.approx(0.8)
    assert b["mean"][4] == pytest.approx(0.35)


def test_the_series_can_be_limited_to_picked_groups(signed_in, project, two_methods):
    groups = runs_group(list(Run.objects.all()), Grouping(by="seed"))
    picked = next(g for g in groups if g.name == "method=b")

    answer = signed_in.get(url("groups:series", project, metric=KEY, group=picked.id)).json()

    assert [g["name"] for g in answer["groups"]] == ["method=b"]


def test_the_series_refuses_an_unknown_band_with_a_message(signed_in, project, two_methods):
    response = signed_in.get(url("groups:series", project, metric=KEY, band="nope"))
    assert response.status_code == 400 and "band" in response.json()["error"]


def test_the_statistics_page_compares_against_a_baseline(signed_in, project, two_methods):
    groups = runs_group(list(Run.objects.all()), Grouping(by="seed"))
    b = next(g for g in groups if g.name == "method=b")

    body = signed_in.get(url("groups:statistics", project, metric=KEY, read="step", step=4,
                             baseline=b.id)).content.decode()

    assert 'id="statistics-table"' in body and "P(better)" in body
    assert "One run" not in body and "Few runs (3)" in body and "Few runs (2)" in body
    assert 'id="statistics-plot"' in body


def test_the_statistics_export_as_csv_and_json(signed_in, project, two_methods):
    as_csv = signed_in.get(url("groups:statistics", project, metric=KEY, k=2, format="csv"))
    as_json = signed_in.get(url("groups:statistics", project, metric=KEY, k=2, format="json"))

    rows = list(csv.reader(io.StringIO(as_csv.content.decode())))
    assert as_csv["Content-Type"].startswith("text/csv")
    assert [row[:2] for row in rows[1:]] == [["method=a", "3"], ["method=b", "2"]]
    data = as_json.json()
    assert data["reading"] == "mean of the last 2 points"
    assert data["groups"][0]["mean"] == pytest.approx((0.7 + 0.7 * 3 / 4) / 2)


def test_a_metric_no_run_logged_is_named(signed_in, project, two_methods):
    body = signed_in.get(url("groups:statistics", project, metric="eval/none")).content.decode()
    assert "No run of the chosen groups logged eval/none." in body


def test_a_step_reading_without_a_step_says_so(signed_in, project, two_methods):
    body = signed_in.get(url("groups:statistics", project, metric=KEY, read="step"))
    assert "Give the step to read the metric at." in body.content.decode()


def test_htmx_gets_only_the_result_of_a_new_grouping(signed_in, project, two_methods):
    response = signed_in.get(url("groups:groups", project, by="settings", key="method"),
                             headers={"HX-Request": "true"})

    body = response.content.decode()
    assert body.lstrip().startswith('<section id="groups-result">')
    assert "method=a" in body and "<html" not in body


def test_statistics_without_k_average_the_last_ten_points(signed_in, project, two_methods):
    data = signed_in.get(url("groups:statistics", project, metric=KEY, format="json")).json()
    assert data["reading"] == "mean of the last 10 points"
