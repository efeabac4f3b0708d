"""The queue and workers pages in a real browser, under the CSP: priorities steered with htmx,
a project's limit set in its settings and shown on the queue, and script payloads in run,
project and worker names shown as text."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.browser.test_xss import PAYLOAD
from tests.stack import start_web
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.queue.services import worker_report
from webapp.runs import services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: no worker takes the runs, so they stay queued."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


@pytest.fixture
def hostile(user, team, experiment):
    project = project_create(team=team, name=f"project {PAYLOAD}", description="", user=user)
    return experiment_create(project=project, author=user, name=f"run {PAYLOAD}",
                             description="", config=experiment.config)


def test_a_member_reorders_the_queue_with_the_priority_buttons(page, user, experiment,
                                                               hostile):
    first = services.run_launch(experiment=experiment, user=user)
    second = services.run_launch(experiment=hostile, user=user)
    worker_report(name=f"celery@{PAYLOAD}", host=PAYLOAD, pid=1, queues=["cpu"],
                  device=PAYLOAD, slots=1, started_at=timezone.now())

    sign_in(page)
    page.click("#nav-queue")
    rows = page.locator("#queue-cpu tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_id(f"queued-{first.pk}")
    expect(rows.nth(1)).to_contain_text(f"run {PAYLOAD} #1")

    page.locator(f"#queued-{second.pk} button[value=up]").click()
    expect(rows.nth(0)).to_have_id(f"queued-{second.pk}")
    expect(rows.nth(0).locator(".priority")).to_have_text("1")

    page.locator(f"#queued-{first.pk} input[name=priority]").fill("9")
    page.locator(f"#queued-{first.pk} .priority-set button").click()
    expect(rows.nth(0)).to_have_id(f"queued-{first.pk}")
    expect(rows.nth(0).locator(".priority")).to_have_text("9")

    page.locator(f"#queued-{first.pk} input[name=priority]").fill("100")
    page.locator(f"#queued-{first.pk} .priority-set button").click()
    expect(rows.nth(0).locator(".priority")).to_have_text("100")
    page.locator(f"#queued-{first.pk} button[value=up]").click()
    expect(page.locator("#queue-error")).to_contain_text("between -100 and 100; 101 is not")
    expect(rows.nth(0).locator(".priority")).to_have_text("100")

    page.click("#workers-link")
    expect(page.locator("#workers")).to_contain_text(f"celery@{PAYLOAD}")
    assert page.evaluate("window.__pwned") is None


def test_an_admin_sets_the_limit_that_the_queue_shows(page, user, project, experiment):
    services.run_launch(experiment=experiment, user=user)
    sign_in(page)
    page.goto(project.get_absolute_url())
    page.click("#project-settings")
    page.fill("#id_max_concurrent_runs", "0")
    page.click("#project-limit-form button[type=submit]")
    assert page.eval_on_selector("#id_max_concurrent_runs", "el => el.validity.rangeUnderflow"), \
        "the browser refuses 0 before sending it (the server's own refusal: test_settings.py)"
    page.fill("#id_max_concurrent_runs", "2")
    page.click("#project-limit-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("At most 2 runs at once.")
    page.click("#nav-queue")
    expect(page.locator("#queue-cpu")).to_contain_text("(at most 2 at once)")
    expect(page.locator("#queue-cpu .wait-reason")).to_contain_text("No worker consumes queue "
                                                                     "cpu")
