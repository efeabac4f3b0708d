"""The sweep pages in a real browser under the CSP: progress, the parallel-coordinates SVG drawn
from the page's data, each setting's importance, cancel; the form's axis rows; script payloads in
the sweep's name and a setting's values shown as text, never run."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import checked_page, sign_in
from tests.stack import start_web
from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.runs.ingestion import metrics_ingest
from webapp.runs.models import RunStatus
from webapp.runs.services import run_claim, run_succeed
from webapp.sweeps.definition import definition_parse
from webapp.sweeps.models import Sweep, SweepStatus
from webapp.sweeps.services import sweep_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
PAYLOAD = f"x{SCRIPT}{IMG}"


@pytest.fixture
def site(transactional_db, tmp_path):
    """The web server alone: no worker takes the sweep's runs, which the test ends itself."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


@pytest.fixture
def page(browser, site):
    with checked_page(browser, site) as page:
        yield page


@pytest.fixture
def base(project, user):
    return experiment_create(project=project, author=user, name="grpo-base", description="",
                             config=RunConfig(max_steps=3).to_dict())


@pytest.fixture
def hostile_sweep(project, user, base) -> Sweep:
    """A random search whose name and one setting's values carry script payloads, with four of
    its six runs finished (enough for importances) and two queued."""
    definition = definition_parse({
        "experiment": "grpo-base", "name": f"sweep {PAYLOAD}", "method": "random",
        "budget": 6, "max_concurrent": 6,
        "objective": {"metric": "reward/mean", "direction": "maximize"},
        "axes": {"dump_column": {"values": [PAYLOAD]},
                 "learning_rate": {"log_uniform": [1e-7, 1e-5]}}}, project=project)
    sweep = sweep_create(definition=definition, user=user)
    for run in sweep.runs.order_by("sweep_trial")[:4]:
        run_claim(run_id=run.pk, worker="w")
        # Better with a larger learning rate: the plot's colours and the importances have
        # something to show.
        value = 1e5 * run.config["learning_rate"]
        metrics_ingest(run_id=run.pk, points=[("reward/mean", 1, value, timezone.now())])
        run_succeed(run_id=run.pk)
    return sweep


def test_the_sweep_page_draws_progress_plot_and_importances_then_cancels(page, hostile_sweep):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page)
    page.goto(hostile_sweep.get_absolute_url())

    expect(page.locator("#sweep-name")).to_contain_text(SCRIPT)
    expect(page.locator("#progress-succeeded")).to_have_text("4 done")
    expect(page.locator("#progress-queued")).to_have_text("2 queued")
    plot = page.locator("#sweep-plot svg.sweep-plot-svg")
    expect(plot).to_be_visible()
    expect(plot.locator("polyline")).to_have_count(4)
    expect(plot.locator(".sweep-axis text").filter(has_text="learning_rate (log)")).to_have_count(1)
    expect(plot.locator(".sweep-axis text").filter(has_text=SCRIPT)).to_have_count(1)
    expect(page.locator("#sweep-importance tr")).to_have_count(2)
    expect(page.locator("#sweep-importance")).to_contain_text("dump_column")
    expect(page.locator("#best-trials")).to_contain_text(SCRIPT)
    assert page.evaluate("window.__pwned") is None
    injected = page.locator("main img[src=x], main script:not([type='application/json'])")
    assert injected.count() == 0, "a payload was rendered as markup"

    page.click("#cancel-sweep")
    expect(page.locator("#sweep-status")).to_have_text("cancelled")
    expect(page.locator(".messages")).to_contain_text("Cancelled the sweep and 2 of its runs.")
    expect(page.locator("#cancel-sweep")).to_have_count(0)
    statuses = sorted(hostile_sweep.runs.values_list("status", flat=True))
    assert statuses == [RunStatus.CANCELLED] * 2 + [RunStatus.SUCCEEDED] * 4
    hostile_sweep.refresh_from_db()
    assert hostile_sweep.status == SweepStatus.CANCELLED
    assert dialogs == []


def test_the_form_adds_axis_rows_and_creates_a_sweep(page, project, base):
    sign_in(page)
    page.goto(f"/experiments/{base.pk}/")
    page.click("#sweep-experiment")
    expect(page.locator("#id_experiment")).to_have_value(str(base.pk))
    page.click("#add-axis")
    expect(page.locator("#axis-rows tr.axis-row")).to_have_count(4)
    expect(page.locator("#id_axes-TOTAL_FORMS")).to_have_value("4")
    page.fill("#id_name", f"form {PAYLOAD}")
    page.fill("#id_metric", "reward/mean")
    page.fill("#id_budget", "2")
    page.select_option("#id_axes-3-setting", "beta")
    page.fill("#id_axes-3-values", "0.0, 0.04")
    page.click("#create-sweep")

    expect(page).to_have_url(re.compile(r"/sweeps/\d+/$"))
    expect(page.locator("#sweep-name")).to_contain_text(SCRIPT)
    expect(page.locator("#progress-queued")).to_have_text("2 queued")
    expect(page.locator("#sweep-importance")).to_contain_text(
        "Importance needs at least 4 finished trials; 0 so far.")
    assert Sweep.objects.get().axes == {"beta": {"values": [0.0, 0.04]}}
    assert page.evaluate("window.__pwned") is None
