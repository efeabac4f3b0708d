"""The runs table in a real browser, under the Content-Security-Policy: pick columns, filter,
sort, group, tick runs and compare them; with script payloads in names, tags and settings that
must show as text and never run."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.reviews.services import run_tag_add
from webapp.runs import ingestion, services
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
PAYLOAD = f"x{SCRIPT}{IMG}"
SHORT = "<img src=x onerror=__pwned='t'>"  # fits a 40-character tag


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: the table reads stored runs, none trains."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def finished(run, reward: float):
    services.run_claim(run_id=run.pk, worker="w")
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample("reward/mean", step, reward * step / 3,
                               timezone.now() - timedelta(minutes=5)) for step in (1, 2, 3)])
    services.run_succeed(run_id=run.pk)
    return run


@pytest.fixture
def runs(user, project, experiment):
    hostile = experiment_create(
        project=project, author=user, name=f"exp {PAYLOAD}", description="",
        config=RunConfig(max_steps=3, prompts_per_step=2, group_size=2,
                         learning_rate=3e-5).to_dict())
    small = [finished(services.run_launch(experiment=experiment, user=user,
                                          overrides={"seed": seed}), reward)
             for seed, reward in ((1, 0.2), (2, 0.4))]
    large = [finished(services.run_launch(experiment=hostile, user=user,
                                          overrides={"seed": seed}), reward)
             for seed, reward in ((1, 0.8), (2, 0.9))]
    queued = services.run_launch(experiment=experiment, user=user)
    Run.objects.filter(pk=large[0].pk).update(name=PAYLOAD,
                                              config={**large[0].config, "note": PAYLOAD})
    run_tag_add(run=large[0], actor=user, name=SHORT)
    return {"small": small, "large": large, "queued": queued}


def rows(page) -> list[int]:
    return [int(pk) for pk in page.locator("#runs-table tr.run-row").evaluate_all(
        "rows => rows.map(r => r.dataset.run)")]


def test_pick_filter_sort_group_and_compare(page, project, runs):
    sign_in(page)
    page.goto(f"/projects/{project.pk}/")
    page.click("#runs-table-link")
    expect(page.get_by_role("heading", name=f"Runs of {project.name}")).to_be_visible()
    assert len(rows(page)) == 5

    # columns: the best reward (max) and a setting with a payload in one run
    page.click("#pick-columns")
    page.fill("#id_add_metric", "reward/mean")
    page.select_option("#id_add_aggregate", "max")
    page.click("#save-columns")
    page.click("#pick-columns")
    page.fill("#id_add_config", "note")
    page.click("#save-columns")
    expect(page.locator("#runs-table th", has_text="reward/mean (max)")).to_be_visible()
    expect(page.locator("#runs-table td", has_text=PAYLOAD).first).to_be_visible()
    expect(page.locator("#runs-table .tag-chip", has_text=SHORT)).to_be_visible()

    # filter: succeeded only (htmx swaps the table; the URL keeps the filter)
    page.check("input[name=status][value=succeeded]")
    expect(page.locator(f'#runs-table tr[data-run="{runs["queued"].pk}"]')).to_have_count(0)
    expect(page).to_have_url(re.compile(r"status=succeeded"))
    assert len(rows(page)) == 4

    # sort by the metric column, highest first
    page.locator("#runs-table th a.sort", has_text="reward/mean (max)").click()
    expect(page.locator("#runs-table th[aria-sort=descending]")).to_have_count(1)
    assert rows(page) == [runs["large"][1].pk, runs["large"][0].pk,
                          runs["small"][1].pk, runs["small"][0].pk]
    # a filter keeps the order
    page.fill("#id_q", "grpo")
    page.click("#apply-filters")
    expect(page.locator("#search-how")).to_contain_text("names")
    assert rows(page) == [runs["small"][1].pk, runs["small"][0].pk]
    page.fill("#id_q", "")
    page.click("#apply-filters")
    expect(page.locator("#runs-table tr.run-row")).to_have_count(4)

    # group by config less seed: two groups of two, with mean ± std
    page.select_option("#id_group", "seed_group")
    expect(page.locator("#groups-table tr.group-row")).to_have_count(2)
    expect(page.locator("#groups-table .group-n").first).to_have_text("2")
    expect(page.locator("#groups-table td.num", has_text="±").first).to_be_visible()
    expect(page.locator("#group-notice")).to_have_count(0)
    page.locator("#groups-table a.group-toggle").first.click()
    expect(page.locator("#groups-table tr.group-member")).to_have_count(2)
    page.select_option("#id_group", "")
    expect(page.locator("#runs-table tr.run-row")).to_have_count(4)

    # tick every run of the page, then compare two of them
    page.check("#select-all")
    assert page.locator("#runs-table .pick-run:checked").count() == 4
    page.uncheck("#select-all")
    page.check(f'#runs-table tr[data-run="{runs["small"][0].pk}"] .pick-run')
    page.check(f'#runs-table tr[data-run="{runs["large"][0].pk}"] .pick-run')
    page.click("#compare-picked")
    expect(page).to_have_url(re.compile(rf"/projects/{project.pk}/compare/\?runs="))
    expect(page.locator("#compare-legend li")).to_have_count(2)
    assert page.evaluate("window.__pwned") is None


def test_every_run_alone_and_a_bad_filter_say_so(page, project, runs):
    sign_in(page)
    page.goto(f"/projects/{project.pk}/runs/?status=succeeded&group=config"
              "&group_settings=seed,learning_rate,note")
    expect(page.locator("#group-notice")).to_contain_text("Every run is its own group")
    expect(page.locator("#groups-table .group-name", has_text=PAYLOAD)).to_be_visible()
    page.goto(f"/projects/{project.pk}/runs/?group=tag")
    expect(page.locator("#groups-table .group-name", has_text=SHORT)).to_be_visible()
    page.goto(f"/projects/{project.pk}/runs/")
    page.fill("#id_q", "metrics.reward/mean > 0.5")
    page.click("#apply-filters")
    expect(page.locator("#table-problem")).to_contain_text("Not a filter rlab can read")
    assert page.evaluate("window.__pwned") is None
