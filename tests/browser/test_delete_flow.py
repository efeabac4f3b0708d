"""Deleting through the pages in chromium: a run from its page, with and without JavaScript, a
refused deletion, and a project once its name is typed."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from tests.webapp.lifecycle import run_with_data
from webapp.projects.models import Project
from webapp.runs.files import run_folder
from webapp.runs.models import Run, RunStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone (nothing here trains), seeing the run folders this test makes."""
    settings.RLAB_RUN_DIR = tmp_path / "runs"
    web, base_url = start_web(tmp_path, RLAB_RUN_DIR=str(settings.RLAB_RUN_DIR),
                              RLAB_DATASET_DIR=str(tmp_path / "datasets"))
    yield base_url
    web.stop()


def test_an_admin_deletes_a_run_from_its_page(page, user, experiment):
    run = run_with_data(experiment, user)
    sign_in(page)
    page.goto(f"/runs/{run.pk}/")
    page.click("#delete-run")
    expect(page.get_by_role("heading", name=f"Delete {experiment.name} #{run.number}?")
           ).to_be_visible()
    expect(page.locator("#plan-checkpoints")).to_have_text("2")
    expect(page.locator("#plan-rollouts")).to_have_text("6")
    page.click("#confirm-delete-button")
    expect(page).to_have_url(re.compile(rf"/experiments/{experiment.pk}/$"))
    expect(page.locator(".messages")).to_contain_text(
        f"Deleted {experiment.name} #{run.number}: 1 run, 2 checkpoints")
    expect(page.locator("#runs")).to_have_count(0)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not run_folder(run.pk, run.created_at).exists()


def test_deleting_works_without_javascript(browser, stack, user, experiment):
    run = run_with_data(experiment, user)
    context = browser.new_context(base_url=stack, java_script_enabled=False)
    page = context.new_page()
    sign_in(page)
    page.goto(f"/runs/{run.pk}/delete/")
    page.click("#confirm-delete-button")
    expect(page).to_have_url(re.compile(rf"/experiments/{experiment.pk}/$"))
    context.close()
    assert not Run.objects.filter(pk=run.pk).exists()


def test_a_refused_deletion_says_what_to_do(page, user, experiment):
    run = run_with_data(experiment, user, status=RunStatus.RUNNING)
    sign_in(page)
    page.goto(f"/runs/{run.pk}/delete/")
    expect(page.locator("#delete-refusals")).to_contain_text("cancel it first")
    expect(page.locator("#confirm-delete-button")).to_have_count(0)


def test_an_admin_deletes_a_project_once_its_name_is_typed(page, user, project, experiment):
    run_with_data(experiment, user)
    sign_in(page)
    page.goto(f"/projects/{project.pk}/")
    expect(page.locator("#disk-use")).to_contain_text("2.0\xa0KB of run folders")
    page.click("#delete-project")
    page.fill("#confirm-name", "not the name")
    page.click("#confirm-delete-button")
    expect(page.locator("#confirm-delete .error")).to_contain_text("Type the project's name")
    page.fill("#confirm-name", project.name)
    page.click("#confirm-delete-button")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.locator(".messages")).to_contain_text(f"Deleted project {project.name}")
    assert not Project.objects.filter(pk=project.pk).exists()
