"""A reviewer's path: open a run, comment, open a rollout, label it, find it on the review page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from webapp.runs import ingestion, services as runs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_viewer_reviews_a_run(page, user, experiment, member_of):
    member_of("viewer", "rita")
    run = runs.run_launch(experiment=experiment, user=user)
    ingestion.rollouts_ingest(run_id=run.pk, step=4, items=[
        {"prompt": "Compute 3 + 4.", "completion": text, "reward": reward, "group": 0,
         "sample_index": i, "advantage": adv}
        for i, (text, reward, adv) in enumerate([("3 + 4 = 7", 1.0, 0.7), ("34", 0.0, -0.7)])])

    sign_in(page, "rita", "correct-horse-9")
    page.goto(f"/runs/{run.pk}/")
    expect(page.locator("#cancel")).to_have_count(0)  # viewers cannot cancel

    page.fill("#comments textarea", "sample 0.1 concatenates the digits")
    page.click("#comment-submit")
    expect(page.locator("#comments .comment")).to_contain_text("concatenates the digits")
    expect(page.locator("#comments textarea")).to_have_value("")

    page.get_by_role("link", name="0.1").first.click()
    expect(page).to_have_url(re.compile(r"/rollouts/\d+/$"))
    expect(page.locator("#completion")).to_have_text("34")
    page.select_option("#id_label", "wrong answer")
    page.fill("#id_note", "digits concatenated")
    page.click("#annotate")
    expect(page.locator("#annotations .comment")).to_contain_text("digits concatenated")

    page.goto(f"/projects/{experiment.project_id}/review/")
    page.select_option("#id_label", "correct")
    expect(page.locator("#annotation-list")).to_contain_text("No annotations match")
    expect(page).to_have_url(re.compile(r"label=correct"))
    page.select_option("#id_label", "wrong answer")
    expect(page.locator("#annotation-list tbody tr")).to_have_count(1)
    expect(page.locator("#annotation-list")).to_contain_text("digits concatenated")

    page.goto(f"/projects/{experiment.project_id}/activity/")
    expect(page.locator("#activity")).to_contain_text("rita annotated")
    expect(page.locator("#activity")).to_contain_text("rita commented")
