"""Group charts and the statistics page in a real browser, under the CSP: each group's mean
with its band (the band's kind switched per chart), the statistics table with its plot, and
script payloads in group names, setting values, tags and metric names shown as text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_xss import PAYLOAD, SCRIPT, SHORT
from tests.stack import start_web
from webapp.projects.activity import Verb
from webapp.reviews.models import RunTag
from webapp.runs import ingestion
from webapp.runs.services import run_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "reward/mean"


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: these pages read stored points, no run trains."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


@pytest.fixture
def seeded_methods(experiment, user):
    """Two methods × 3 seeds, one method's value a script payload, tagged with payloads; their
    reward logged at ragged steps, and a metric named by a payload."""
    start = timezone.now() - timedelta(hours=1)
    for method, level in ((PAYLOAD, 0.2), ("spo", 0.6)):
        for seed in range(3):
            run = run_create(experiment=experiment, user=user, verb=Verb.LAUNCHED,
                             config={"method": method, "seed": seed, "learning_rate": 1e-6},
                             enqueue=False)
            RunTag.objects.create(run=run, name=SHORT if method == PAYLOAD else "spo")
            steps = range(seed, 200, 1 + seed)  # ragged: each seed its own steps
            ingestion.metrics_ingest(run_id=run.pk, points=[
                ingestion.MetricSample(key=key, step=step, value=level + seed / 10 + step / 1000,
                                       wall_time=start + timedelta(seconds=step))
                for step in steps for key in (KEY, PAYLOAD)])


def test_a_group_chart_draws_its_band_and_switches_its_kind(page, project, seeded_methods):
    sign_in(page)
    page.goto(f"/projects/{project.pk}/groups/")

    expect(page.locator("#group-table")).to_contain_text(SCRIPT)
    panel = page.locator(f'.chart-panel[data-panel="{KEY}"]')
    chart = panel.locator(".group-chart")
    expect(chart).to_have_attribute("data-state", "drawn")
    expect(chart).to_have_attribute("data-band", "std")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(panel.locator(".group-chart-note")).to_contain_text("n: runs that report there")
    # the chart fills its panel in the dashboard grid
    box, plot = panel.bounding_box(), chart.locator("canvas").bounding_box()
    assert plot["width"] > box["width"] * 0.8
    # at the cursor, each group's mean and how many runs it averages
    chart.hover()
    expect(panel.locator(".group-readout")).to_contain_text("(n=")

    panel.locator(".band-choice").select_option("ci")
    expect(chart).to_have_attribute("data-band", "ci")
    expect(chart).to_have_attribute("data-state", "drawn")
    panel.locator(".band-choice").select_option("minmax")
    expect(chart).to_have_attribute("data-band", "minmax")
    expect(chart.locator("canvas")).to_have_count(1)

    # the hostile metric's panel draws too, its name as text
    hostile = page.locator(".chart-panel").filter(has_text="onerror").first
    expect(hostile.locator(".group-chart")).to_have_attribute("data-state", "drawn")
    assert page.evaluate("window.__pwned") is None


def test_grouping_by_a_tag_and_by_settings_shows_payloads_as_text(page, project,
                                                                   seeded_methods):
    sign_in(page)
    page.goto(f"/projects/{project.pk}/groups/?by=tag")
    expect(page.locator("#group-table")).to_contain_text(SHORT)

    page.goto(f"/projects/{project.pk}/groups/")
    page.select_option("#group-by", "settings")
    page.fill("#group-keys", "method")
    page.click("#group-submit")
    expect(page.locator("#group-table")).to_contain_text(f"method={PAYLOAD}")
    expect(page.locator(f'.chart-panel[data-panel="{KEY}"] .group-chart')).to_have_attribute(
        "data-state", "drawn")

    page.fill("#group-keys", "seed, method")
    page.click("#group-submit")
    expect(page.locator("#grouping-error")).to_contain_text("in a group of its own")
    assert page.locator("main img[src=x]").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_the_statistics_page_compares_groups_with_a_plot(page, project, seeded_methods):
    sign_in(page)
    page.goto(f"/projects/{project.pk}/statistics/")
    page.select_option("#metric", [KEY])
    page.select_option("#read", "step")
    page.fill("#step", "150")
    page.click("#statistics-submit")

    table = page.locator("#statistics-table")
    expect(table).to_contain_text(SCRIPT)
    expect(table).to_contain_text("Few runs (3)")
    # pick the baseline now that the groups are listed
    page.select_option("#baseline", label="method=spo")
    page.click("#statistics-submit")
    expect(table).to_contain_text("P(better)")
    expect(page.locator(".statistics-intervals")).to_have_attribute("data-state", "drawn")
    expect(page.locator(".statistics-intervals canvas")).to_have_count(1)

    page.select_option("#metric", [KEY, PAYLOAD])
    page.click("#statistics-submit")
    expect(page.locator(".statistics-profile")).to_have_attribute("data-state", "drawn")
    expect(page.locator("#export-csv")).to_be_visible()
    assert page.locator("main img[src=x]").count() == 0
    assert page.evaluate("window.__pwned") is None
