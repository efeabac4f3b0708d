"""A run's artifacts in a real browser: the run page's panel opens folders in place, an image
shows under the Content-Security-Policy, JSON is pretty-printed, an MLflow table sorts and
pages. Screenshots go to RLAB_SCREENSHOT_DIR when it is set (for a person to look at)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from tests.webapp.artifacts.conftest import image_bytes
from webapp.artifacts.models import LoggedModel
from webapp.runs import services as runs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(transactional_db, tmp_path, artifact_dir):
    """The web server alone (no page here needs a worker), on the test's artifact store."""
    web, base_url = start_web(tmp_path, RLAB_ARTIFACT_DIR=str(artifact_dir))
    yield base_url
    web.stop()


@pytest.fixture
def run(user, experiment, save_artifact):
    """A finished run with a chart image, a JSON config, an MLflow table of 60 rows and a
    logged model."""
    run = runs.run_launch(experiment=experiment, user=user)
    runs.run_claim(run_id=run.pk, worker="w")
    runs.run_succeed(run_id=run.pk)
    save_artifact(run, "plots/reward.png", image_bytes("PNG", (480, 240)))
    save_artifact(run, "config.json", json.dumps(
        {"learning_rate": 1e-6, "beta": 0.04, "reward_funcs": ["accuracy", "format"],
         "note": "<script>window.__pwned = 1</script>"}).encode())
    save_artifact(run, "eval/predictions.json", json.dumps({
        "columns": ["prompt", "completion", "reward"],
        "data": [[f"What is {i} + {i}?", f"The answer is {2 * i}.", round((i * 37 % 100) / 100, 2)]
                 for i in range(60)]}).encode())
    model = LoggedModel.objects.create(experiment=experiment, source_run=run, name="policy",
                                       model_type="transformers", status="ready")
    save_artifact(model, "model/config.json", b'{"model_type": "llama"}')
    return run


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("RLAB_SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_a_runs_artifacts_are_browsable(page, run):
    sign_in(page)
    page.goto(f"/runs/{run.pk}/")
    panel = page.locator("#artifacts")
    expect(panel).to_be_visible()
    expect(panel.locator(".artifact-file")).to_have_count(1)
    expect(panel.locator(".artifact-folder")).to_have_count(2)
    expect(panel.locator(".logged-models")).to_contain_text("policy")
    _screenshot(page, "artifacts-page.png")
    page.evaluate("window.__notReloaded = true")

    panel.get_by_role("link", name="plots/").click()  # swapped in place by htmx
    expect(panel.locator(".artifact-file td:first-child")).to_have_text("reward.png")
    assert page.evaluate("window.__notReloaded") is True
    expect(panel.locator(".artifact-path")).to_contain_text("plots")

    panel.get_by_role("link", name="reward.png").click()
    image = page.locator("#artifact-image")
    expect(image).to_be_visible()
    page.wait_for_function("document.querySelector('#artifact-image').complete")
    assert image.evaluate("img => img.naturalWidth") == 480
    _screenshot(page, "artifacts-image.png")
    download = page.request.get(page.get_by_role("link", name="Download").get_attribute("href"))
    assert download.headers["content-disposition"] == 'attachment; filename="reward.png"'
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.body() == image_bytes("PNG", (480, 240))

    page.goto(f"/runs/{run.pk}/")
    panel.get_by_role("link", name="config.json").click()
    text = page.locator("#artifact-text")
    expect(text).to_contain_text('"learning_rate": 1e-06,\n  "beta": 0.04,')
    expect(text).to_contain_text('"note": "<script>window.__pwned = 1</script>"')
    assert page.evaluate("window.__pwned") is None
    _screenshot(page, "artifacts-json.png")

    page.goto(f"/runs/{run.pk}/")
    panel.get_by_role("link", name="eval/").click()
    panel.get_by_role("link", name="predictions.json").click()
    table = page.locator(".mlflow-table")
    expect(table.locator("tbody tr")).to_have_count(50)
    expect(page.locator(".table-summary")).to_contain_text("60 rows and 3 columns, page 1 of 2")
    expect(table.locator("tbody tr").first).to_contain_text("What is 0 + 0?")
    table.get_by_role("link", name="reward").click()  # lowest reward first
    expect(table.locator("th[aria-sort=ascending]")).to_have_text("reward ↑")
    expect(table.locator("tbody tr").first.locator("td").last).to_have_text("0.0")
    table.get_by_role("link", name="reward").click()  # then highest first
    expect(table.locator("tbody tr").first.locator("td").last).to_have_text("0.99")
    page.locator(".next-page").click()
    expect(page.locator(".table-summary")).to_contain_text("page 2 of 2")
    expect(table.locator("tbody tr")).to_have_count(10)
    assert "sort=2" in page.url and "order=desc" in page.url and "page=2" in page.url
    page.locator(".prev-page").click()
    expect(page.locator(".table-summary")).to_contain_text("page 1 of 2")
    _screenshot(page, "artifacts-table.png")
