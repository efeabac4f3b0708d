"""Text that carries the event stream's own framing (carriage returns, `event: end`) reaches an
open run page as text, and the page's live stream stays open (webapp.live.stream)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from tests.webapp.live.test_stream import FRAMING_PAYLOAD
from webapp.runs import ingestion, services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: this test's run is moved along by the test, not by a worker."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def test_a_run_page_shows_framing_text_and_keeps_streaming(page, experiment, user):
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    services.run_mark_running(run_id=run.pk, device="cpu", total_steps=3)
    sign_in(page)
    page.goto(run.get_absolute_url())
    expect(page.locator("#run-status")).to_have_text("running")

    ingestion.rollouts_ingest(run_id=run.pk, step=1, items=[
        {"prompt": "p", "completion": FRAMING_PAYLOAD, "reward": 1.0}])
    ingestion.logs_append(run_id=run.pk, lines=[
        (timezone.now(), "info", "trainer", FRAMING_PAYLOAD)])
    for panel in ("#rollouts pre", "#log-lines"):
        expect(page.locator(panel)).to_contain_text("event: end")
        expect(page.locator(panel)).to_contain_text("after")
    stream = page.locator("#run-stream")
    expect(stream).not_to_have_attribute("data-stream-closed", "true")

    ingestion.logs_append(run_id=run.pk, lines=[
        (timezone.now(), "info", "trainer", "still streaming")])
    expect(page.locator("#log-lines")).to_contain_text("still streaming")
    services.run_succeed(run_id=run.pk)
    expect(page.locator("#run-status")).to_have_text("succeeded")
    expect(stream).to_have_attribute("data-stream-closed", "true")  # by the run's own end
