"""The path a user travels: sign in, define an experiment, launch it, watch it, cancel a run."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import training_processes
from webapp.runs.models import Run, RunStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _define_experiment(page, project, model_dir) -> None:
    page.get_by_role("link", name=project.name).click()
    page.get_by_role("link", name="New experiment").click()
    page.fill("#id_name", "tiny-grpo")
    page.fill("#id_model", str(model_dir))  # a path on the worker: refused, whoever asks
    page.fill("#id_max_steps", "40")
    page.fill("#id_prompts_per_step", "2")
    page.fill("#id_max_new_tokens", "6")
    page.click("button[type=submit]")
    expect(page.locator("#id_model-error")).to_contain_text(
        "a path on the worker is not accepted")
    expect(page.locator("#id_name")).to_have_value("tiny-grpo")
    # The picker offers the models registered under the model roots.
    expect(page.locator("datalist#model-choices option[value='local:tiny']")).to_have_count(1)
    page.fill("#id_model", "local:tiny")
    page.fill("#id_group_size", "1")  # invalid: the form must say so and keep the input
    page.click("button[type=submit]")
    expect(page.locator("#id_group_size-error")).to_contain_text(
        "the group size must be at least 2")
    expect(page.locator("#id_model")).to_have_value("local:tiny")
    page.fill("#id_group_size", "2")
    page.locator("#section-rollout summary").click()  # the folded rollout settings
    page.fill("#id_rollouts_logged_per_step", "4")
    page.select_option("#id_rollout_backend", "transformers")  # no engine start-up to wait for
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="tiny-grpo")).to_be_visible()


def test_launch_watch_and_cancel(page, user, project, tiny_model):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/"))  # the app asks for a sign-in first
    sign_in(page)
    _define_experiment(page, project, tiny_model)

    page.click("#launch")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    charts = page.locator("#charts")
    expect(charts.locator("figure.chart[data-key='reward/mean'] canvas")).to_be_visible(
        timeout=90_000)
    first_step = int(charts.get_attribute("data-last-step"))
    expect(charts).not_to_have_attribute("data-last-step", str(first_step), timeout=60_000)
    assert int(charts.get_attribute("data-last-step")) > first_step, "the chart did not grow"
    rows = page.locator("#rollouts tbody tr")
    expect(rows.first).to_be_visible()
    first_rollout_step = page.locator("#rollouts h2 .muted").inner_text()
    expect(page.locator("#rollouts h2 .muted")).not_to_have_text(first_rollout_step,
                                                                timeout=30_000)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#run-progress")).to_have_text("step 40 / 40")
    page.click("#browse-rollouts")  # every step's rollouts, from the run page
    expect(page.locator("h1")).to_contain_text("Rollouts")
    page.go_back()
    expect(page.locator("#log-lines")).to_contain_text("finished 40 steps")  # the log, live
    expect(page.locator("#run-stream")).to_have_attribute("data-stream-closed", "true")

    page.get_by_role("link", name="tiny-grpo").click()
    page.click("#launch")
    expect(page.locator("#run-status")).to_have_text("running", timeout=90_000)
    second = Run.objects.get(number=2)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    expect(page.locator("#cancel")).to_have_count(0)
    second.refresh_from_db()
    assert second.status == RunStatus.CANCELLED
    expect(page.locator("#run-stream")).to_have_attribute("data-stream-closed", "true")
    deadline = time.monotonic() + 10
    while training_processes(second.pk) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert training_processes(second.pk) == []

