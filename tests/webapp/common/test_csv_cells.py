"""One rule for every CSV export: text that a spreadsheet would run as a formula is quoted."""

from __future__ import annotations

import csv
import doctest
import io

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from webapp.common import csv_cells
from webapp.common.csv_cells import csv_cell
from webapp.experiments.services import experiment_create
from webapp.runs import ingestion, services


def test_doctests_pass():
    assert doctest.testmod(csv_cells).failed == 0


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", " =1+1", "\t=1+1",
                                  "\r=1+1", "\n @x", "\u00a0-2", "\t", "\rplain"])
def test_text_that_would_start_a_formula_is_quoted(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["reward/mean", "a = b", " plain", "", 3, -0.5, 1.5])
def test_other_values_are_kept(value):
    assert csv_cell(value) == value


@pytest.mark.django_db
def test_metric_names_behind_whitespace_are_quoted_in_the_metrics_csv(signed_in, experiment,
                                                                       user):
    run = services.run_launch(experiment=experiment, user=user)
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=' \t=HYPERLINK("http://evil")', step=1, value=1.0,
                              wall_time=timezone.now())])
    response = signed_in.get(reverse("live:metrics_csv", args=[run.pk]))

    async def body() -> bytes:
        return b"".join([chunk async for chunk in response])

    rows = list(csv.reader(io.StringIO(async_to_sync(body)().decode())))
    assert rows[1][0] == '\' \t=HYPERLINK("http://evil")'


@pytest.mark.django_db
def test_names_behind_whitespace_are_quoted_in_the_leaderboard_csv(signed_in, project, user):
    training = experiment_create(project=project, author=user, name=" @SUM(A1)",
                                 description="", config={"task": "arithmetic"})
    run = services.run_launch(experiment=training, user=user)
    ingestion.metrics_ingest(run_id=run.pk, points=[ingestion.MetricSample(
        key="eval/pass@1", step=0, value=0.5, wall_time=timezone.now())])
    response = signed_in.get(reverse("evaluations:leaderboard_export", args=[project.pk, "csv"]))
    models = [row["model"] for row in csv.DictReader(io.StringIO(response.content.decode()))]
    assert models == ["' @SUM(A1) #1 · step 0"]
