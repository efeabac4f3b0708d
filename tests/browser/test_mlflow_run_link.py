"""The link the mlflow client prints for a run (`<tracking uri>/#/experiments/<id>/runs/<id>`,
the MLflow UI's address) opens the run's page in rlab, in a real browser; the experiment's link
its experiment's page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import checked_page, sign_in
from tests.stack import start_web
from webapp.api.tokens import token_create
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(transactional_db, tmp_path):
    server, base_url = start_web(tmp_path)
    yield base_url
    server.stop()


@pytest.fixture
def page(browser, web):
    """A page on the web server alone: no run here trains, so no worker is started."""
    with checked_page(browser, web) as page:
        yield page


def test_the_run_link_the_mlflow_client_prints_opens_the_run(page, web, project, user,
                                                              monkeypatch, capsys):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{web}/mlflow/{project.pk}")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token_create(user=user, name="mlflow")[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_experiment("link-check")
    with mlflow.start_run(run_name="printed-link"):
        mlflow.log_metric("loss", 1.0, step=1)
    out = capsys.readouterr().out
    run_link = re.search(r"View run printed-link at: (\S+)", out).group(1)
    experiment_link = re.search(r"View experiment at: (\S+)", out).group(1)
    run = Run.objects.get(name="printed-link")
    assert run_link == (f"{web}/mlflow/{project.pk}/#/experiments/{run.experiment_id}/runs/"
                        f"{run.pk}")

    sign_in(page)
    page.goto(run_link)
    expect(page).to_have_url(f"{web}/runs/{run.pk}/")
    expect(page.locator("h1")).to_contain_text("printed-link")

    page.goto(experiment_link)
    expect(page).to_have_url(f"{web}/experiments/{run.experiment_id}/")

    page.goto(f"/mlflow/{project.pk}/")  # no fragment: the list, whose links need no script
    page.locator("#tracked-runs").get_by_role("link", name=re.compile("printed-link")).click()
    expect(page).to_have_url(f"{web}/runs/{run.pk}/")
