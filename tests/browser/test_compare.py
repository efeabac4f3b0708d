"""Charts and run comparison in a real browser: a finished run's charts (headline metrics
first, log scale, wall-time axis, smoothing, zoom that fetches finer points, PNG and CSV
downloads) and two runs of different experiments overlaid, with their config diff."""

from __future__ import annotations

import math
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.runs import ingestion, services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: these pages read stored points, no run trains."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def log(run, key, values: dict[int, float]) -> None:
    start = timezone.now() - timedelta(hours=3)
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=value,
                              wall_time=start + timedelta(seconds=2 * step))
        for step, value in values.items()])


def finished(run):
    services.run_claim(run_id=run.pk, worker="w")
    services.run_succeed(run_id=run.pk)
    return run


def test_two_runs_overlaid_with_their_config_diff(page, user, project, experiment):
    other = experiment_create(
        project=project, author=user, name="grpo-lr", description="",
        config=RunConfig(max_steps=3, prompts_per_step=2, group_size=2, learning_rate=3e-5,
                         seed=7).to_dict())
    first = finished(services.run_launch(experiment=experiment, user=user))
    second = finished(services.run_launch(experiment=other, user=user))
    log(first, "reward/mean", {step: step / 100 for step in range(1, 51)})
    log(second, "reward/mean", {step: 1 - step / 100 for step in range(1, 51)})
    log(second, "loss/policy", {step: -step / 10 for step in range(1, 51)})

    sign_in(page)
    page.get_by_role("link", name=project.name).click()
    page.click("#compare-runs")
    page.check(f"#pick-{first.pk}")
    expect(page.locator("#compare-legend li")).to_have_count(1)
    page.check(f"#pick-{second.pk}")

    chart = page.locator("#compare-charts figure.chart[data-key='reward/mean']")
    expect(chart.locator("canvas")).to_be_visible()
    legend = chart.locator(".chart-legend li")
    expect(legend).to_have_count(2)
    # in the picker's order: by experiment name
    expect(legend.nth(0)).to_contain_text("grpo-lr #1")
    expect(legend.nth(0)).to_contain_text("0.5")  # its last value
    expect(legend.nth(1)).to_contain_text("grpo-small #1")
    expect(legend.nth(1)).to_contain_text("0.5")
    expect(chart).to_have_attribute("data-runs", "2")
    # a metric only one run logged is charted too, in its own panel
    expect(page.locator("#compare-charts section.chart-panel[data-panel='loss/policy'] "
                        "figure[data-key='loss/policy'] canvas")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"runs={second.pk}&runs={first.pk}"))

    # hovering names the step and each run's value there
    box = chart.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    expect(chart.locator(".readout")).to_have_text(re.compile(r"^step \d+$"))

    diff = page.locator("#config-diff")
    expect(diff.locator("tr.differs")).to_have_count(2)
    expect(diff.locator("tr.differs[data-key='learning_rate']")).to_contain_text("3e-05")
    expect(diff.locator("tr.differs[data-key='seed']")).to_be_visible()
    same = diff.locator("tr.same[data-key='algorithm']")
    expect(same).to_be_visible()
    page.check("#only-diff")
    expect(same).to_be_hidden()
    expect(diff.locator("tr.differs[data-key='seed']")).to_be_visible()
    expect(page).to_have_url(re.compile(r"only_diff=1"))


def test_run_charts_group_zoom_and_export(page, user, experiment, tmp_path):
    run = finished(services.run_launch(experiment=experiment, user=user))
    rewards = {step: math.sin(step / 200) for step in range(1, 5_001)}
    rewards[2_345] = 9.0  # a spike that downsampling must keep
    log(run, "reward/mean", rewards)
    log(run, "kl/mean", {step: 0.01 + step / 1e4 for step in range(1, 5_001)})
    log(run, "loss/policy", {step: math.cos(step / 50) for step in range(1, 5_001)})
    log(run, "time/step_s", {step: 2.0 for step in range(1, 5_001)})

    sign_in(page)
    page.goto(run.get_absolute_url())
    charts = page.locator("#charts")
    reward = charts.locator("figure.chart[data-key='reward/mean']")
    expect(reward.locator("canvas")).to_be_visible()
    expect(charts).to_have_attribute("data-done", "true")
    panels = charts.locator("section.chart-panel:visible").evaluate_all(
        "panels => panels.map(p => p.dataset.panel)")
    # headline metrics first (with a panel for each one not logged), then by name
    assert panels == ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean",
                      "loss/policy", "time/step_s"]
    expect(charts.locator("figure.placeholder[data-key='entropy/mean']")).to_contain_text(
        "Not recorded")
    points = int(reward.get_attribute("data-points"))
    assert 1_000 < points <= 2_001, "5,000 steps arrive downsampled"
    expect(reward.locator(".readout")).to_contain_text("step 5000")

    # log scale where every value is positive; linear, and saying why, elsewhere
    charts.locator(".chart-log").check()
    expect(charts.locator("figure[data-key='kl/mean']")).to_have_attribute("data-scale", "log")
    loss = charts.locator("figure[data-key='loss/policy']")
    expect(loss).to_have_attribute("data-scale", "linear")
    expect(loss.locator(".chart-note")).to_contain_text("values ≤ 0")

    charts.locator(".chart-x").select_option("time")
    expect(reward.locator(".readout")).to_contain_text(re.compile(r"step 5000 · 2h46"))
    charts.locator(".chart-smoothing").fill("0.9")
    expect(reward.locator(".readout")).to_contain_text("(raw ")

    page.reload()  # the settings are kept
    expect(charts.locator(".chart-x")).to_have_value("time")
    expect(charts.locator(".chart-log")).to_be_checked()
    expect(charts.locator("figure[data-key='loss/policy'] canvas")).to_be_visible()
    charts.locator(".chart-x").select_option("step")
    charts.locator(".chart-smoothing").fill("0")
    expect(reward.locator(".readout")).to_have_text(re.compile(r"^step 5000: [-\d.]+$"))  # redrawn

    # Dragging over about 800 steps zooms in and fetches them at full resolution.
    over = reward.locator(".u-over")
    box = over.bounding_box()
    x0 = box["x"] + box["width"] * 0.40
    x1 = box["x"] + box["width"] * 0.56
    y = box["y"] + box["height"] / 2
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x1, y, steps=5)
    page.mouse.up()
    expect(reward).to_have_attribute("data-zoomed", "true")
    expect(reward).to_have_attribute("data-refined", re.compile(r"^\d+-\d+$"))
    start, end = map(int, reward.get_attribute("data-refined").split("-"))
    assert 1_500 < start < end < 3_500 and end - start < 1_000
    assert int(reward.get_attribute("data-points")) > points  # the real points are in
    over.dblclick()
    expect(reward).to_have_attribute("data-zoomed", "")

    with page.expect_download() as png:
        reward.locator(".chart-png").click()
    assert png.value.suggested_filename == f"run-{run.pk}-reward_mean.png"
    saved = tmp_path / "chart.png"
    png.value.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with page.expect_download() as table:
        reward.locator(".chart-csv").click()
    saved = tmp_path / "reward.csv"
    table.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == "key,step,value,wall_time" and len(lines) == 1 + 5_000
    assert lines[2_345].startswith("reward/mean,2345,9.0,")


def test_points_streamed_to_an_open_run_page_extend_its_charts(page, user, experiment):
    """The page's event stream (not polling) brings new points: the chart of a metric grows,
    a new metric gets its chart, and htmx swaps no JSON into the page."""
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    services.run_mark_running(run_id=run.pk, device="cpu", total_steps=100)
    log(run, "reward/mean", {step: step / 10 for step in range(1, 11)})
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url)
            if "metrics.json" in request.url else None)

    sign_in(page)
    page.goto(run.get_absolute_url())
    charts = page.locator("#charts")
    expect(charts).to_have_attribute("data-last-step", "10")
    log(run, "reward/mean", {11: 2.0, 12: 2.5})
    log(run, "perf/tokens_per_s", {12: 99.0})
    expect(charts).to_have_attribute("data-last-step", "12")
    expect(charts.locator("figure[data-key='reward/mean'] .readout")).to_have_text(
        "step 12: 2.5")
    expect(charts.locator("figure[data-key='perf/tokens_per_s'] canvas")).to_be_visible()
    assert '"series"' not in charts.inner_text()
    assert len(reads) == 1, "the history is read once; then the stream brings the points"
