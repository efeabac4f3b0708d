"""DELETE of a run, an experiment and a project through the REST API: the web pages' rules (an
admin anything, a member the runs they launched, 409 while a run may still write)."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.webapp.lifecycle import run_with_data
from webapp.api.tokens import token_create
from webapp.experiments.models import Experiment
from webapp.projects.models import Project
from webapp.runs.files import run_folder
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.RLAB_RUN_DIR = tmp_path / "runs"
    settings.RLAB_DATASET_DIR = tmp_path / "datasets"


def api_delete(user, path: str):
    token = token_create(user=user, name="script")[1]
    return Client(enforce_csrf_checks=True).delete(
        path, headers={"Authorization": f"Bearer {token}"})


def test_an_admin_deletes_a_run(experiment, user, django_capture_on_commit_callbacks):
    run = run_with_data(experiment, user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_delete(user, f"/api/runs/{run.pk}")
    assert response.status_code == 204
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not run_folder(run.pk, run.created_at).exists()


def test_a_member_deletes_the_runs_they_launched_only(experiment, user, member_of):
    member = member_of("member")
    theirs, others = run_with_data(experiment, member), run_with_data(experiment, user)
    assert api_delete(member, f"/api/runs/{theirs.pk}").status_code == 204
    response = api_delete(member, f"/api/runs/{others.pk}")
    assert response.status_code == 403
    assert "ask an admin" in response.json()["detail"]


def test_an_active_run_is_a_409_that_says_to_cancel_it(experiment, user):
    run = run_with_data(experiment, user, status=RunStatus.RUNNING)
    response = api_delete(user, f"/api/runs/{run.pk}")
    assert response.status_code == 409
    assert "cancel it first" in response.json()["detail"]


def test_an_outsider_cannot_tell_a_run_exists(experiment, user, other_user):
    run = run_with_data(experiment, user)
    assert api_delete(other_user, f"/api/runs/{run.pk}").status_code == 404
    assert api_delete(other_user, "/api/runs/999999").status_code == 404


def test_a_delete_without_a_token_is_401(experiment, user):
    run = run_with_data(experiment, user)
    assert Client().delete(f"/api/runs/{run.pk}").status_code == 401
    assert Run.objects.filter(pk=run.pk).exists()


def test_an_admin_deletes_an_experiment_and_a_member_may_not(experiment, user, member_of):
    run_with_data(experiment, user)
    assert api_delete(member_of("member"), f"/api/experiments/{experiment.pk}"
                      ).status_code == 403
    assert api_delete(user, f"/api/experiments/{experiment.pk}").status_code == 204
    assert not Experiment.objects.filter(pk=experiment.pk).exists()


def test_an_admin_deletes_a_project_unless_a_run_is_active(project, experiment, user):
    run = run_with_data(experiment, user, status=RunStatus.QUEUED)
    assert api_delete(user, f"/api/projects/{project.pk}").status_code == 409
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED)
    assert api_delete(user, f"/api/projects/{project.pk}").status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
