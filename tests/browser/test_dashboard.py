"""Dashboards in a real browser, under the CSP: the run page's charts sit in an even grid; a member
pins, moves (buttons and drag and drop), resizes and hides panels and saves the layout, and
another run of the project opens the same way; a viewer sees the layout without the controls."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import checked_page, sign_in
from tests.browser.test_xss import PAYLOAD
from tests.stack import start_web
from webapp.projects.models import Project
from webapp.runs import ingestion, services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEYS = ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean", "loss/policy",
        "time/step_s", "grad/norm"]


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: these pages read stored points, no run trains."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def finished_run(experiment, user, keys):
    run = services.run_launch(experiment=experiment, user=user)
    start = timezone.now() - timedelta(hours=1)
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=(k + 1) * step / 10,
                               wall_time=start + timedelta(seconds=step))
        for k, key in enumerate(keys) for step in range(1, 21)])
    services.run_claim(run_id=run.pk, worker="w")
    services.run_succeed(run_id=run.pk)
    return run


def order(page) -> list[str]:
    return page.locator("#charts .chart-grid > section.chart-panel:visible").evaluate_all(
        "panels => panels.map(p => p.dataset.panel)")


def boxes(page) -> dict[str, dict]:
    return {key: page.locator(f"#charts section.chart-panel[data-panel='{key}']").bounding_box()
            for key in order(page)}


def panel(page, key):
    return page.locator(f"#charts section.chart-panel[data-panel='{key}']")


def open_run(page, run):
    page.goto(run.get_absolute_url())
    expect(page.locator("#charts")).to_have_attribute("data-done", "true")
    expect(panel(page, "grad/norm").locator("canvas")).to_be_visible()


def test_charts_sit_in_an_even_grid(page, user, experiment):
    run = finished_run(experiment, user, KEYS)
    sign_in(page)
    open_run(page, run)
    found = boxes(page)
    assert len(found) == 7
    widths = {round(box["width"]) for box in found.values()}
    heights = {round(box["height"]) for box in found.values()}
    assert len(widths) == 1 and len(heights) == 1, "every panel is one cell of the grid"
    columns = sorted({round(box["x"]) for box in found.values()})
    rows = sorted({round(box["y"]) for box in found.values()})
    assert len(columns) == 3 and len(rows) == 3, "three columns on a wide screen, rows aligned"
    # each canvas fills its panel's width, less the card's padding
    width = panel(page, "loss/policy").locator("canvas").first.bounding_box()["width"]
    assert found["loss/policy"]["width"] - 40 < width <= found["loss/policy"]["width"]
    # narrower screens: two columns, then one
    page.set_viewport_size({"width": 900, "height": 900})
    page.wait_for_function(
        "() => new Set([...document.querySelectorAll('#charts section.chart-panel')]"
        ".filter(p => p.offsetParent).map(p => Math.round(p.getBoundingClientRect().x)))"
        ".size === 2")
    page.set_viewport_size({"width": 600, "height": 900})
    page.wait_for_function(
        "() => new Set([...document.querySelectorAll('#charts section.chart-panel')]"
        ".filter(p => p.offsetParent).map(p => Math.round(p.getBoundingClientRect().x)))"
        ".size === 1")


def test_a_member_arranges_saves_and_another_run_opens_the_same_way(page, user, experiment,
                                                                    project):
    first = finished_run(experiment, user, KEYS)
    second = finished_run(experiment, user, KEYS + ["extra/new"])
    sign_in(page)
    open_run(page, first)
    default = ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean", "grad/norm",
               "loss/policy", "time/step_s"]
    assert order(page) == default
    save = page.locator(".dashboard-save")
    expect(save).to_be_disabled()

    # pin: the panel goes to the top
    panel(page, "loss/policy").locator(".panel-pin").click()
    expect(panel(page, "loss/policy").locator(".panel-pin")).to_have_attribute(
        "aria-pressed", "true")
    assert order(page)[0] == "loss/policy"
    expect(save).to_be_enabled()
    # a pinned panel cannot move below the unpinned ones
    expect(panel(page, "loss/policy").locator(".panel-down")).to_be_disabled()

    # move by buttons, from the keyboard
    panel(page, "kl/mean").locator(".panel-down").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    assert order(page) == ["loss/policy", "reward/mean", "entropy/mean",
                           "completion/length_mean", "kl/mean", "grad/norm", "time/step_s"]
    panel(page, "time/step_s").locator(".panel-up").click()
    assert order(page)[-2:] == ["time/step_s", "grad/norm"]

    # drag and drop: time/step_s onto the left half of reward/mean goes before it
    handle = panel(page, "time/step_s").locator(".panel-handle")
    target = panel(page, "reward/mean")
    box = target.bounding_box()
    handle.drag_to(target, target_position={"x": 20, "y": box["height"] / 2})
    assert order(page) == ["loss/policy", "time/step_s", "reward/mean", "entropy/mean",
                           "completion/length_mean", "kl/mean", "grad/norm"]

    # resize: 2 columns, then 3 × 2; the chart follows its panel
    cell = panel(page, "reward/mean").bounding_box()
    panel(page, "reward/mean").locator(".panel-size").select_option("2x1")
    page.wait_for_function(
        "() => { const p = document.querySelector(\"section[data-panel='reward/mean']\");"
        " return p.querySelector('canvas').getBoundingClientRect().width >"
        " p.getBoundingClientRect().width - 40; }")
    wide = panel(page, "reward/mean").bounding_box()
    assert wide["width"] > 2 * cell["width"]
    panel(page, "grad/norm").locator(".panel-size").select_option("3x2")
    tall = panel(page, "grad/norm").bounding_box()
    assert tall["height"] > 2 * cell["height"]
    assert abs(tall["width"] - page.locator("#charts .chart-grid").bounding_box()["width"]) < 2

    # hide two panels, show one of them again from the list of hidden panels
    panel(page, "kl/mean").locator(".panel-hide").click()
    panel(page, "entropy/mean").locator(".panel-hide").click()
    hidden = page.locator(".dashboard-hidden button")
    expect(hidden).to_have_text(["entropy/mean", "kl/mean"])
    assert "kl/mean" not in order(page) and "entropy/mean" not in order(page)
    hidden.filter(has_text="entropy/mean").click()
    expect(hidden).to_have_text(["kl/mean"])
    expect(panel(page, "entropy/mean").locator("canvas")).to_be_visible()
    # moving skips the hidden panel: completion/length_mean goes below grad/norm
    panel(page, "completion/length_mean").locator(".panel-down").click()
    assert order(page) == ["loss/policy", "time/step_s", "reward/mean", "entropy/mean",
                           "grad/norm", "completion/length_mean"]

    save.click()
    expect(page.locator(".dashboard-status")).to_have_text("Layout saved for the project.")
    expect(save).to_be_disabled()
    saved = Project.objects.get(pk=project.pk).chart_layout["panels"]
    assert [p["key"] for p in saved] == ["loss/policy", "time/step_s", "reward/mean",
                                         "entropy/mean", "kl/mean", "grad/norm",
                                         "completion/length_mean"]
    assert saved[0]["pinned"] and not saved[1]["pinned"]
    assert saved[2]["size"] == "2x1" and saved[5]["size"] == "3x2"
    assert [p["key"] for p in saved if p["hidden"]] == ["kl/mean"]

    # another run of the project opens the same way, its new metric appended at the end
    open_run(page, second)
    assert order(page) == ["loss/policy", "time/step_s", "reward/mean", "entropy/mean",
                           "grad/norm", "completion/length_mean", "extra/new"]
    expect(panel(page, "kl/mean")).to_be_hidden()
    expect(panel(page, "reward/mean")).to_have_attribute("data-size", "2x1")
    expect(panel(page, "loss/policy")).to_have_class("chart-panel pinned")

    # reset: the default order and sizes, for the project
    page.locator(".dashboard-reset").click()
    expect(page.locator(".dashboard-status")).to_have_text("Layout reset for the project.")
    assert order(page) == default[:4] + ["extra/new"] + default[4:]
    expect(page.locator(".dashboard-hidden")).to_be_hidden()
    expect(panel(page, "reward/mean")).to_have_attribute("data-size", "1x1")
    assert Project.objects.get(pk=project.pk).chart_layout == {"panels": []}


def test_a_viewer_sees_the_layout_without_controls(browser, stack, user, experiment, project,
                                                    member_of):
    run = finished_run(experiment, user, KEYS)
    Project.objects.filter(pk=project.pk).update(chart_layout={"panels": [
        {"key": "grad/norm", "pinned": True, "size": "2x1"}]})
    member_of("viewer", username="vera")
    with checked_page(browser, stack) as page:
        sign_in(page, "vera", "correct-horse-9")
        open_run(page, run)
        assert order(page)[0] == "grad/norm"
        expect(panel(page, "grad/norm")).to_have_attribute("data-size", "2x1")
        expect(page.locator(".panel-bar")).to_have_count(0)
        expect(page.locator(".dashboard-toolbar")).to_have_count(0)


def test_comparison_charts_open_in_the_layout(page, user, experiment, project):
    first = finished_run(experiment, user, KEYS)
    second = finished_run(experiment, user, ["reward/mean", "extra/new"])
    Project.objects.filter(pk=project.pk).update(chart_layout={"panels": [
        {"key": "extra/new", "pinned": True, "size": "1x1"}]})
    sign_in(page)
    page.goto(f"/projects/{project.pk}/compare/?runs={first.pk}&runs={second.pk}")
    grid = page.locator("#compare-charts .chart-grid")
    expect(grid.locator("section[data-panel='extra/new'] canvas")).to_be_visible()
    keys = grid.locator("section.chart-panel").evaluate_all(
        "panels => panels.map(p => p.dataset.panel)")
    assert keys[:2] == ["extra/new", "reward/mean"]
    # picking runs again swaps the result in: its grid is arranged and editable too
    page.click("details.picker > summary")
    page.uncheck(f"#pick-{second.pk}")
    page.check(f"#pick-{second.pk}")
    expect(page.locator("#compare-charts section[data-panel='extra/new'] .panel-pin")) \
        .to_have_attribute("aria-pressed", "true")


def test_a_metric_key_with_markup_is_only_text(page, user, experiment, project):
    run = finished_run(experiment, user, ["reward/mean", PAYLOAD])
    Project.objects.filter(pk=project.pk).update(chart_layout={"panels": [
        {"key": PAYLOAD, "pinned": True, "size": "2x1"}]})
    sign_in(page)
    page.goto(run.get_absolute_url())
    hostile = page.locator("#charts .chart-grid > section.chart-panel").first
    expect(hostile.locator("canvas")).to_be_visible()
    expect(hostile.locator(".chart-title")).to_have_text(PAYLOAD)
    hostile.locator(".panel-size").select_option("1x1")
    page.locator(".dashboard-save").click()
    expect(page.locator(".dashboard-status")).to_have_text("Layout saved for the project.")
    assert Project.objects.get(pk=project.pk).chart_layout["panels"][0]["key"] == PAYLOAD
    assert page.evaluate("() => window.__pwned") is None


def test_metrics_streamed_mid_run_get_panels_in_the_layout(page, user, experiment, project):
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    services.run_mark_running(run_id=run.pk, device="cpu", total_steps=100)
    now = timezone.now()

    def log(key, step, value):
        ingestion.metrics_ingest(run_id=run.pk, points=[
            ingestion.MetricSample(key=key, step=step, value=value, wall_time=now)])

    log("reward/mean", 1, 0.1)
    log("loss/policy", 1, 0.5)
    Project.objects.filter(pk=project.pk).update(chart_layout={"panels": [
        {"key": "perf/tokens_per_s", "pinned": True, "size": "2x1"},
        {"key": "loss/policy", "pinned": False, "size": "1x1"}]})
    sign_in(page)
    page.goto(run.get_absolute_url())
    charts = page.locator("#charts")
    expect(charts).to_have_attribute("data-last-step", "1")
    assert order(page)[:2] == ["loss/policy", "reward/mean"]

    log("zzz/new", 2, 1.0)  # not in the layout: appended
    log("perf/tokens_per_s", 2, 99.0)  # pinned in the layout: first, at its size
    expect(panel(page, "perf/tokens_per_s").locator("canvas")).to_be_visible()
    expect(panel(page, "zzz/new").locator("canvas")).to_be_visible()
    assert order(page) == ["perf/tokens_per_s", "loss/policy", "reward/mean", "kl/mean",
                           "entropy/mean", "completion/length_mean", "zzz/new"]
    expect(panel(page, "perf/tokens_per_s")).to_have_attribute("data-size", "2x1")
    expect(panel(page, "perf/tokens_per_s").locator(".panel-pin")).to_have_attribute(
        "aria-pressed", "true")
    log("reward/mean", 3, 0.7)  # the panels moved keep drawing the stream
    expect(panel(page, "reward/mean").locator(".readout")).to_have_text("step 3: 0.7")
    expect(page.locator(".dashboard-save")).to_be_disabled()  # nothing for the user to save
