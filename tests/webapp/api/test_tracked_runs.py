"""Tracked runs through the API: a script that trains elsewhere starts a run, logs to it and
ends it; rlab never queues it, never reaps it, and shows it like any other run."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from webapp.api.tokens import token_create
from webapp.experiments.models import ExperimentKind
from webapp.runs import services, tracking
from webapp.runs.models import MetricPoint, Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user):
    token = token_create(user=user, name="script")[1]

    def call(path: str, body=None):
        return Client().post(path, json.dumps(body or {}), content_type="application/json",
                             headers={"Authorization": f"Bearer {token}"})

    return call


def test_a_script_starts_logs_and_ends_a_run(api, project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as enqueued:
        response = api(f"/api/projects/{project.pk}/tracked-runs", {
            "experiment": "trl-grpo", "name": "lr 1e-6", "params": {"lr": 1e-6, "lora": True},
            "tags": {"host": "node-3"}})
    assert response.status_code == 201, response.content
    assert not enqueued  # no worker is asked to run it
    run = Run.objects.get(pk=response.json()["id"])
    assert run.status == RunStatus.RUNNING and run.is_tracked and run.started_at
    assert run.experiment.kind == ExperimentKind.TRACKED and run.experiment.project == project
    assert (run.name, run.config, run.tracked_tags) == (
        "lr 1e-6", {"lr": "1e-06", "lora": "True"}, {"host": "node-3"})
    body = response.json()
    assert (body["run_name"], body["tags"], body["kind"]) == ("lr 1e-6", {"host": "node-3"},
                                                             "tracked")

    assert api(f"/api/runs/{run.pk}/params", {"params": {"beta": 0.04}}).status_code == 200
    refused = api(f"/api/runs/{run.pk}/params", {"params": {"lr": 2e-6}})
    assert refused.status_code == 422 and "lr is '1e-06', not '2e-06'" in str(refused.json())
    run.refresh_from_db()
    assert run.config == {"lr": "1e-06", "lora": "True", "beta": "0.04"}

    logged = api(f"/api/runs/{run.pk}/metrics", {"series": [
        {"key": "train/loss", "steps": [1, 2, 3], "values": [0.9, 0.7, 0.6]}]})
    assert logged.status_code == 200
    assert api(f"/api/runs/{run.pk}/finish", {"status": "failed"}).json()["status"] == "failed"
    assert api(f"/api/runs/{run.pk}/finish").status_code == 409
    assert api(f"/api/runs/{run.pk}/metrics", {"points": [
        {"key": "train/loss", "step": 4, "value": 0.5}]}).status_code == 409
    assert MetricPoint.objects.filter(run=run).count() == 3

    second = api(f"/api/projects/{project.pk}/tracked-runs", {"experiment": "trl-grpo"})
    assert Run.objects.get(pk=second.json()["id"]).experiment == run.experiment
    assert Run.objects.get(pk=second.json()["id"]).number == 2


def test_a_start_sent_again_with_its_client_key_returns_the_same_run(api, project):
    path = f"/api/projects/{project.pk}/tracked-runs"
    first = api(path, {"experiment": "retried", "name": "a", "client_key": "k1"})
    again = api(path, {"experiment": "retried", "name": "a", "client_key": "k1"})
    other = api(path, {"experiment": "retried", "name": "a", "client_key": "k2"})
    unkeyed = [api(path, {"experiment": "retried"}) for _ in range(2)]
    elsewhere = api(path, {"experiment": "another", "client_key": "k1"})

    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    ids = {response.json()["id"] for response in [first, other, *unkeyed, elsewhere]}
    assert len(ids) == 5
    assert Run.objects.filter(experiment__project=project).count() == 5


def test_a_tracked_name_cannot_take_over_a_launched_experiment(api, project, experiment):
    response = api(f"/api/projects/{project.pk}/tracked-runs", {"experiment": experiment.name})
    assert response.status_code == 422
    assert "is a training experiment of this project" in str(response.json())
    with pytest.raises(ValidationError, match="is tracked"):
        tracked = tracking.tracked_experiment_get_or_create(project=project,
                                                            user=experiment.author, name="x")
        services.run_launch(experiment=tracked, user=experiment.author)


def test_the_stale_run_check_leaves_tracked_runs_alone(project, user, experiment):
    tracked = tracking.tracked_run_create(
        experiment=tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                             name="script"), user=user)
    launched = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=launched.pk, worker="w")
    long_ago = timezone.now() - timedelta(hours=5)
    Run.objects.filter(pk__in=[tracked.pk, launched.pk]).update(heartbeat_at=long_ago)
    assert services.runs_fail_stale() == 1
    assert Run.objects.get(pk=tracked.pk).status == RunStatus.RUNNING
    assert Run.objects.get(pk=launched.pk).status == RunStatus.FAILED


def test_a_tracked_runs_page_shows_its_parameters_and_tags(signed_in, project, user):
    run = tracking.tracked_run_create(
        experiment=tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                             name="script"),
        user=user, name="sweep-7", params={"learning_rate": "3e-6"}, tags={"git": "abc123"})
    page = signed_in.get(run.get_absolute_url()).content.decode()
    assert "tracked run" in page and "sweep-7" in page
    assert ">learning_rate<" in page and "3e-6" in page and "abc123" in page
    assert 'id="cancel"' not in page and 'id="run-progress-bar"' not in page


def test_a_tracked_experiment_is_listed_but_neither_launched_nor_edited(signed_in, project,
                                                                        user):
    from django.urls import reverse

    tracked = tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                        name="verl-ppo")
    page = signed_in.get(project.get_absolute_url()).content.decode()
    experiments = page.split('id="evaluations"')[0]
    assert "verl-ppo" in experiments and "logged by scripts that run elsewhere" in experiments
    page = signed_in.get(tracked.get_absolute_url()).content.decode()
    assert 'id="launch"' not in page and "/api/docs" in page
    assert signed_in.get(reverse("experiments:edit", args=[tracked.pk])).status_code == 404
