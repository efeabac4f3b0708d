"""The leaderboard in a real browser: opened from the project page, sorted by clicking a column
header, filtered by dataset, downloaded as the CSV of the rows on screen, and two ticked jobs
sent to the prompt-level comparison."""

from __future__ import annotations

import csv
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from webapp.experiments.models import ExperimentKind
from webapp.experiments.services import experiment_create
from webapp.runs.ingestion import MetricSample, metrics_ingest
from webapp.runs.services import evaluation_launch, run_claim, run_launch, run_succeed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HELD_OUT = "arithmetic · held-out"
TRAIN = "arithmetic · train"


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: the leaderboard reads stored metrics, nothing trains."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def evaluated(experiment, user, model: str, metrics: dict[str, float], minutes: int) -> None:
    """A succeeded job of the evaluation `experiment` on `model` that measured `metrics`."""
    run = evaluation_launch(experiment=experiment, user=user, model=model)
    run_claim(run_id=run.pk, worker="w")
    when = timezone.now() - timedelta(hours=1) + timedelta(minutes=minutes)
    metrics_ingest(run_id=run.pk, points=[MetricSample(key=f"eval/{key}", step=0, value=value,
                                                       wall_time=when)
                                          for key, value in metrics.items()])
    run_succeed(run_id=run.pk)


@pytest.fixture
def results(project, experiment, user):
    held_out = experiment_create(project=project, author=user, name="sums-eval", description="",
                                 config={"task": "arithmetic", "samples": 4, "pass_ks": "1, 4",
                                         "maj_ks": "4"}, kind=ExperimentKind.EVALUATION)
    train = experiment_create(project=project, author=user, name="sums-train", description="",
                              config={"task": "arithmetic", "split": "train", "samples": 4,
                                      "pass_ks": "1", "maj_ks": "4"},
                              kind=ExperimentKind.EVALUATION)
    size = {"prompts": 20, "samples": 4}
    evaluated(held_out, user, "model-a", {"pass@1": 0.8, "maj@4": 0.2, **size}, minutes=1)
    evaluated(held_out, user, "model-b", {"pass@1": 0.5, "maj@4": 0.9, **size}, minutes=2)
    evaluated(train, user, "model-a", {"pass@1": 0.95, "maj@4": 0.97, **size}, minutes=3)
    training = run_launch(experiment=experiment, user=user)
    metrics_ingest(run_id=training.pk, points=[
        MetricSample(key=f"eval/{key}", step=5, value=value, wall_time=timezone.now())
        for key, value in {"pass@1": 0.3, "maj@4": 0.5, **size}.items()])


def models_shown(page) -> list[str]:
    return page.locator("#leaderboard-table tr.result-row td.model").all_inner_texts()


def test_sort_filter_and_download_the_leaderboard(page, project, results, tmp_path):
    sign_in(page)
    page.get_by_role("link", name=project.name).click()
    page.click("#leaderboard-link")
    expect(page.get_by_role("heading", name="Leaderboard")).to_be_visible()

    # grouped by dataset, best pass@1 first within each
    groups = page.locator("#leaderboard-table tbody.dataset-group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0).locator("tr.dataset-head")).to_contain_text(HELD_OUT)
    assert models_shown(page) == ["model-a", "model-b", "grpo-small #1 · step 5", "model-a"]
    expect(groups.nth(0).locator("td.best[data-metric='pass@1']")).to_have_text("0.800")

    page.locator("th[data-column='maj@4'] a").click()
    expect(page.locator("th[data-column='maj@4']")).to_have_attribute("aria-sort",
                                                                       "descending")
    assert models_shown(page) == ["model-b", "grpo-small #1 · step 5", "model-a", "model-a"]
    expect(page).to_have_url(re.compile(r"sort=maj%404"))
    page.locator("th[data-column='maj@4'] a").click()
    expect(page.locator("th[data-column='maj@4']")).to_have_attribute("aria-sort", "ascending")
    assert models_shown(page) == ["model-a", "grpo-small #1 · step 5", "model-b", "model-a"]

    page.select_option("#lb-dataset", HELD_OUT)
    expect(groups).to_have_count(1)
    expect(page).to_have_url(re.compile(r"dataset=.*sort=maj%404&order=asc"))
    assert models_shown(page) == ["model-a", "grpo-small #1 · step 5", "model-b"]  # still sorted

    with page.expect_download() as download:
        page.click("#export-csv")
    assert download.value.suggested_filename == "arithmetic-leaderboard.csv"
    saved = tmp_path / "leaderboard.csv"
    download.value.save_as(saved)
    with saved.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["model"], row["dataset"], row["maj@4"], row["source"]) for row in rows] == [
        ("model-a", HELD_OUT, "0.2", "job"), ("grpo-small #1 · step 5", HELD_OUT, "0.5",
                                             "training"),
        ("model-b", HELD_OUT, "0.9", "job")]

    # only jobs can be ticked: a periodic evaluation keeps no samples to compare
    rows = page.locator("#leaderboard-table tr.result-row")
    expect(rows.nth(1).locator("input[name=jobs]")).to_have_count(0)
    rows.nth(0).locator("input[name=jobs]").check()
    rows.nth(2).locator("input[name=jobs]").check()
    page.click("#evaluation-compare-submit")
    expect(page).to_have_url(re.compile(r"/evaluations/compare/\?a=\d+&b=\d+$"))
