"""Who may log through the tracking endpoints: the web pages' rules, told in MLflow's words.

The real client first (what a script sees), then every endpoint as every kind of caller with
Django's test client (the exact statuses and error JSON)."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from webapp.api.tokens import token_create
from webapp.experiments.models import Experiment
from webapp.runs.models import Run
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create


def test_a_script_without_a_token_is_refused(tracking):
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking(token=None)
    with pytest.raises(MlflowException) as raised:
        mlflow.set_experiment("sweep")

    assert raised.value.error_code == "UNAUTHENTICATED"
    assert "MLFLOW_TRACKING_TOKEN" in raised.value.message


def test_a_script_with_a_revoked_or_mistyped_token_is_refused(tracking, token):
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking(token=token[:-2])
    with pytest.raises(MlflowException) as raised:
        mlflow.start_run()

    assert raised.value.error_code == "UNAUTHENTICATED"
    assert not Run.objects.exists()


def test_the_token_works_as_the_basic_auth_password(tracking, token, monkeypatch):
    import mlflow

    tracking(token=None)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ada")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", token)
    with mlflow.start_run(run_name="basic"):
        mlflow.log_metric("loss", 1.0, step=1)

    assert Run.objects.get().name == "basic"


def test_a_viewers_token_cannot_create_runs(tracking, member_of, project, user):
    import mlflow
    from mlflow.exceptions import MlflowException

    tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    tracking(token=token_create(user=member_of("viewer"), name="mlflow")[1])
    mlflow.set_experiment("sweep")  # reading is allowed
    with pytest.raises(MlflowException) as raised:
        mlflow.start_run()

    assert raised.value.error_code == "PERMISSION_DENIED"
    assert not Run.objects.exists()


def test_an_outsiders_token_finds_no_project(tracking, other_user):
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking(token=token_create(user=other_user, name="mlflow")[1])
    with pytest.raises(MlflowException) as raised:
        mlflow.set_experiment("sweep")

    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not Experiment.objects.filter(name="sweep").exists()


ROLES = ["anonymous", "bad token", "outsider", "viewer", "member", "admin"]
READ = {"anonymous": 401, "bad token": 401, "outsider": 404, "viewer": 200, "member": 200,
        "admin": 200}
WRITE = {**READ, "viewer": 403}
CODES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST"}

PREFIX = "/mlflow/{project_id}/api/2.0/mlflow/"
# (method, path, body or query) -> expected status per role
ENDPOINTS = [
    ("get", "experiments/get-by-name", {"experiment_name": "sweep"}, READ),
    ("get", "experiments/get", {"experiment_id": "{experiment_id}"}, READ),
    ("post", "experiments/create", {"name": "new-{role}"}, WRITE),
    ("post", "runs/create", {"experiment_id": "{experiment_id}"}, WRITE),
    ("get", "runs/get", {"run_id": "{run_id}"}, READ),
    ("post", "runs/log-metric", {"run_id": "{run_id}", "key": "loss", "value": 1.0,
                                 "timestamp": 1_700_000_000_000, "step": 1}, WRITE),
    ("post", "runs/log-parameter", {"run_id": "{run_id}", "key": "lr", "value": "0.1"}, WRITE),
    ("post", "runs/set-tag", {"run_id": "{run_id}", "key": "stage", "value": "a"}, WRITE),
    ("post", "runs/log-batch", {"run_id": "{run_id}", "metrics": [
        {"key": "loss", "value": 1.0, "timestamp": 1_700_000_000_000, "step": 2}]}, WRITE),
    ("post", "runs/update", {"run_id": "{run_id}", "status": "RUNNING"}, WRITE),
    ("post", "runs/log-inputs", {"run_id": "{run_id}", "datasets": [
        {"dataset": {"name": "gsm8k", "digest": "abc", "source_type": "local",
                     "source": "{}"}}]}, WRITE),
]


@pytest.fixture
def callers(user, other_user, member_of) -> dict[str, Client]:
    def with_token(token: str) -> Client:
        return Client(headers={"Authorization": f"Bearer {token}"})

    return {"anonymous": Client(), "bad token": with_token("rlab_0123_nope"),
            "outsider": with_token(token_create(user=other_user, name="t")[1]),
            "viewer": with_token(token_create(user=member_of("viewer"), name="t")[1]),
            "member": with_token(token_create(user=member_of("member"), name="t")[1]),
            "admin": with_token(token_create(user=user, name="t")[1])}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "values", "expected"), ENDPOINTS,
                         ids=[path for _, path, _, _ in ENDPOINTS])
def test_every_endpoint_answers_each_caller_as_the_web_pages_do(
        callers, project, user, role, method, path, values, expected):
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    run = tracked_run_create(experiment=experiment, user=user)
    ids = {"project_id": project.pk, "experiment_id": experiment.pk, "run_id": run.pk,
           "role": role.replace(" ", "-")}
    filled = {key: value.format(**ids) if isinstance(value, str) else value
              for key, value in values.items()}
    url = PREFIX.format(**ids) + path
    client = callers[role]
    if method == "get":
        response = client.get(url, filled)
    else:
        response = client.post(url, json.dumps(filled), content_type="application/json")

    assert response.status_code == expected[role], response.content
    if response.status_code != 200:
        assert response.json()["error_code"] == CODES[response.status_code]
        assert response.json()["message"]


@pytest.mark.django_db
def test_a_browser_session_is_not_a_token(signed_in, project):
    response = signed_in.get(PREFIX.format(project_id=project.pk) + "experiments/get",
                             {"experiment_id": "0"})

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_basic_auth_without_a_token_as_password_is_refused(project):
    credentials = base64.b64encode(b"ada:lovelace-1843").decode()
    client = Client(headers={"Authorization": f"Basic {credentials}"})
    response = client.get(PREFIX.format(project_id=project.pk) + "experiments/get",
                          {"experiment_id": "0"})

    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


@pytest.mark.django_db
def test_an_unsupported_call_is_not_implemented_in_mlflows_words(project):
    response = Client().post(PREFIX.format(project_id=project.pk) + "registered-models/create",
                             "{}", content_type="application/json")

    assert response.status_code == 501
    assert response.json()["error_code"] == "NOT_IMPLEMENTED"
    assert "registered-models/create" in response.json()["message"]
