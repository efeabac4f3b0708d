"""A run's own token (webapp.api.run_tokens), as a script run's process gets it: the real mlflow
client and transformers' MLflowCallback log into that run with it, and the run's status stays
its worker's; it reaches nothing but its run (a 404 for another run, another project, lists and
pages, worded alike whether or not they exist); it stops working when its run ends (401)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from django.test import Client
from django.urls import get_resolver

from tests.stack import start_web
from webapp.api.models import ApiToken
from webapp.api.run_tokens import run_token_create
from webapp.api.tokens import token_create
from webapp.artifacts.models import Artifact, LoggedModel, LoggedModelStatus
from webapp.config.middleware import RUN_TOKEN_ROUTES
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.runs.models import MetricPoint, Run, RunStatus
from webapp.runs.services import run_cancel, run_fail, run_succeed

TRACKING = "api/2.0/mlflow"


def script_run(project, user, name: str = "trl-grpo") -> Run:
    """A script run as a worker holds it: running, in its script experiment."""
    experiment, _ = Experiment.objects.get_or_create(
        project=project, name=name,
        defaults={"kind": ExperimentKind.SCRIPT, "config": {}, "author": user})
    number = experiment.runs.count() + 1
    return Run.objects.create(experiment=experiment, number=number, launched_by=user,
                              status=RunStatus.RUNNING, queue="cpu",
                              config={"script": {"argv": ["python", "train.py"]}})


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def mlflow_get(client: Client, project_id: int, call: str, token: str, **params):
    return client.get(f"/mlflow/{project_id}/{TRACKING}/{call}", params, **bearer(token))


def mlflow_post(client: Client, project_id: int, call: str, token: str, body: dict):
    return client.post(f"/mlflow/{project_id}/{TRACKING}/{call}", json.dumps(body),
                       content_type="application/json", **bearer(token))


@pytest.fixture
def run(project, user) -> Run:
    return script_run(project, user)


@pytest.fixture
def token(run) -> str:
    return run_token_create(run=run)


@pytest.fixture
def other_run(project, user) -> Run:
    """Another run of the same project, launched by the same user."""
    return script_run(project, user)


# What its run's process does with it -------------------------------------------------------

@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


PROCESS = textwrap.dedent('''
    """A script run's process: the mlflow client's fluent API, then a Trainer reporting to
    MLflow (its checkpoint as a logged model: HF_MLFLOW_LOG_ARTIFACTS), both resuming the run
    by MLFLOW_RUN_ID."""
    import os, sys
    from pathlib import Path

    import mlflow
    import torch

    run_id = os.environ["MLFLOW_RUN_ID"]
    active = mlflow.start_run()
    mlflow.log_metric("loss", 0.5, step=1)
    mlflow.log_params({"lr": 1e-6, "model": "tiny"})
    mlflow.set_tag("stage", "warmup")
    Path("notes.txt").write_text("from the process")
    mlflow.log_artifact("notes.txt")
    mlflow.end_run()
    print("ACTIVE", active.info.run_id, flush=True)

    # veRL's tracking: set_experiment(trainer.project_name), then start_run in it; the name is
    # the script's own, and still the run's experiment is found and no other is made.
    os.environ["MLFLOW_RUN_ID"] = run_id
    experiment = mlflow.set_experiment("verl-project-name")
    mlflow.start_run(experiment_id=experiment.experiment_id, run_name="run-1")
    mlflow.log_metrics({"critic/score/mean": 0.25}, step=3)
    mlflow.end_run()
    print("EXPERIMENT", experiment.experiment_id, flush=True)

    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            ids = torch.arange(8) + index
            return {"input_ids": ids, "labels": ids}

    os.environ["MLFLOW_RUN_ID"] = run_id  # start_run took it out of the environment
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    args = TrainingArguments(output_dir="out", max_steps=2, per_device_train_batch_size=2,
                             logging_steps=1, save_strategy="steps", save_steps=2,
                             report_to=["mlflow"], use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=Rows()).train()
''')


def test_the_mlflow_client_and_a_trainer_log_into_the_run_which_keeps_running(
        web, transactional_db, project, user, tiny_model, tmp_path):
    run = script_run(project, user)
    environment = {**os.environ, "MLFLOW_TRACKING_URI": f"{web}/mlflow/{project.pk}",
                   "MLFLOW_TRACKING_TOKEN": run_token_create(run=run),
                   "MLFLOW_RUN_ID": str(run.pk), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                   "HF_MLFLOW_LOG_ARTIFACTS": "1"}
    environment.pop("MLFLOW_EXPERIMENT_ID", None)
    environment.pop("MLFLOW_EXPERIMENT_NAME", None)
    done = subprocess.run([sys.executable, "-c", PROCESS, str(tiny_model)], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    assert f"ACTIVE {run.pk}\n" in done.stdout
    assert f"EXPERIMENT {run.experiment_id}\n" in done.stdout
    assert MetricPoint.objects.get(run=run, key="critic/score/mean", step=3).value == 0.25
    assert project.experiments.count() == 1  # set_experiment made none
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # end_run and the Trainer's end changed nothing
    assert run.finished_at is None
    assert run.config["lr"] == "1e-06" and run.config["model"] == "tiny"
    assert run.config["max_steps"] == "2"  # the Trainer's arguments, logged as parameters
    assert run.config["script"] == {"argv": ["python", "train.py"]}
    assert run.tracked_tags["stage"] == "warmup"
    steps = set(MetricPoint.objects.filter(run=run).values_list("key", "step"))
    assert {("loss", 1), ("loss", 2), ("learning_rate", 1)} <= steps
    assert MetricPoint.objects.filter(run=run, key="loss", step=1).count() == 1
    assert Artifact.objects.get(run=run, path="notes.txt").size == len("from the process")
    checkpoint = LoggedModel.objects.get(source_run=run)
    assert checkpoint.name == "checkpoint-2"
    assert checkpoint.status == LoggedModelStatus.READY
    assert Artifact.objects.filter(logged_model=checkpoint,
                                   path="artifacts/checkpoint-2/model.safetensors").exists()


# Its scope ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_its_own_run_is_reachable_through_the_api_and_tracking(client, run, token, project):
    assert client.get(f"/api/runs/{run.pk}", **bearer(token)).status_code == 200
    wrote = client.post(f"/api/runs/{run.pk}/metrics",
                        json.dumps({"points": [{"key": "loss", "step": 1, "value": 0.5}]}),
                        content_type="application/json", **bearer(token))
    assert wrote.status_code == 200, wrote.content
    got = mlflow_get(client, project.pk, "runs/get", token, run_id=run.pk, run_uuid=run.pk)
    assert got.status_code == 200
    assert got.json()["run"]["info"]["run_id"] == str(run.pk)
    experiment = mlflow_get(client, project.pk, "experiments/get", token,
                            experiment_id=run.experiment_id)
    assert experiment.json()["experiment"]["name"] == run.experiment.name
    by_name = mlflow_get(client, project.pk, "experiments/get-by-name", token,
                         experiment_name=run.experiment.name)
    assert by_name.status_code == 200
    # Whatever name the script asks for, its token finds its run's experiment.
    for name in ("some other name", "Default"):
        found = mlflow_get(client, project.pk, "experiments/get-by-name", token,
                           experiment_name=name)
        assert found.json()["experiment"]["experiment_id"] == str(run.experiment_id)


@pytest.mark.django_db
def test_another_run_of_the_same_project_is_not_found_as_one_that_does_not_exist(
        client, run, token, other_run, project):
    for run_id in (other_run.pk, 10**9):
        assert client.get(f"/api/runs/{run_id}", **bearer(token)).status_code == 404
        wrote = client.post(f"/api/runs/{run_id}/metrics",
                            json.dumps({"points": [{"key": "loss", "step": 1, "value": 1}]}),
                            content_type="application/json", **bearer(token))
        assert wrote.status_code == 404
        got = mlflow_get(client, project.pk, "runs/get", token, run_id=run_id)
        batch = mlflow_post(client, project.pk, "runs/log-batch", token,
                            {"run_id": str(run_id), "metrics": [
                                {"key": "loss", "value": 1, "timestamp": 0, "step": 1}]})
        for answer in (got, batch):
            assert answer.status_code == 404
            assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    answers = {mlflow_get(client, project.pk, "runs/get", token, run_id=run_id).json()["message"]
               for run_id in (other_run.pk, 10**9)}
    assert len(answers) == 1  # no hint of which exists
    assert not MetricPoint.objects.filter(run=other_run).exists()


@pytest.mark.django_db
def test_a_body_naming_two_runs_is_judged_as_the_view_reads_it(client, run, token, other_run,
                                                              project):
    """runs/get takes run_id before run_uuid: the scope reads the body the same way."""
    smuggled = mlflow_get(client, project.pk, "runs/get", token, run_id=other_run.pk,
                          run_uuid=run.pk)
    assert smuggled.status_code == 404
    for odd in (f"+{run.pk}", f" {run.pk}", f"{run.pk}.0", "", "\u0661"):
        assert mlflow_get(client, project.pk, "runs/get", token, run_id=odd).status_code in (
            400, 404)
    assert client.get(f"/api/runs/+{run.pk}", **bearer(token)).status_code == 404


@pytest.mark.django_db
def test_another_projects_experiment_and_its_own_under_another_uri_are_not_found(
        client, run, token, team, user):
    from webapp.projects.services import project_create

    elsewhere = project_create(team=team, name="Elsewhere", description="", user=user)
    foreign = Experiment.objects.create(project=elsewhere, name="theirs", author=user,
                                        kind=ExperimentKind.TRACKED, config={})
    for project_id, experiment_id in ((run.experiment.project_id, foreign.pk),
                                      (elsewhere.pk, foreign.pk),
                                      (elsewhere.pk, run.experiment_id)):
        answer = mlflow_get(client, project_id, "experiments/get", token,
                            experiment_id=experiment_id)
        assert answer.status_code == 404
        assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert mlflow_get(client, elsewhere.pk, "runs/get", token,
                      run_id=run.pk).status_code == 404
    created = mlflow_post(client, run.experiment.project_id, "experiments/create", token,
                          {"name": "made by the process"})
    assert created.status_code == 404
    assert not Experiment.objects.filter(name="made by the process").exists()


@pytest.mark.django_db
def test_the_apis_other_endpoints_and_the_pages_are_not_found(client, run, token, project):
    for path in ("/api/projects", "/api/runs", f"/api/projects/{project.pk}", "/api/queue",
                 f"/api/projects/{project.pk}/experiments", "/api/openapi.json"):
        answer = client.get(path, **bearer(token))
        assert answer.status_code == 404, path
    cancel = client.post(f"/api/runs/{run.pk}/cancel", **bearer(token))
    assert cancel.status_code == 404
    assert client.delete(f"/api/runs/{run.pk}", **bearer(token)).status_code == 404
    for page in ("/", run.get_absolute_url(), f"/mlflow/{project.pk}/", "/settings/tokens/"):
        assert client.get(page, **bearer(token)).status_code == 404, page
    unimplemented = mlflow_post(client, project.pk, "runs/delete-tag", token,
                                {"run_id": str(run.pk), "key": "stage"})
    assert unimplemented.json()["error_code"] == "NOT_IMPLEMENTED"
    searched = mlflow_post(client, project.pk, "runs/search", token,
                           {"experiment_ids": [str(run.experiment_id)]})
    assert searched.status_code == 404
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_another_runs_artifacts_and_logged_models_are_not_found(client, run, token, other_run,
                                                               project):
    base = f"/mlflow/{project.pk}/api/2.0/mlflow-artifacts/artifacts"
    own = f"{run.experiment_id}/{run.pk}/artifacts"
    theirs = f"{other_run.experiment_id}/{other_run.pk}/artifacts"
    assert client.get(base, {"path": own}, **bearer(token)).status_code == 200
    assert client.get(base, {"path": theirs}, **bearer(token)).status_code == 404
    put = client.put(f"{base}/{theirs}/x.txt", b"data", content_type="text/plain",
                     **bearer(token))
    assert put.status_code == 404
    assert not Artifact.objects.filter(run=other_run).exists()
    model = LoggedModel.objects.create(experiment=other_run.experiment, source_run=other_run,
                                       name="checkpoint-2")
    assert client.get(f"/mlflow/{project.pk}/{TRACKING}/logged-models/{model.pk}",
                      **bearer(token)).status_code == 404
    outputs = mlflow_post(client, project.pk, "runs/outputs", token,
                          {"run_id": str(run.pk), "models": [{"model_id": model.pk}]})
    assert outputs.status_code == 404
    created = mlflow_post(client, project.pk, "logged-models", token,
                          {"experiment_id": str(other_run.experiment_id),
                           "source_run_id": str(other_run.pk), "name": "stolen"})
    assert created.status_code == 404
    model.refresh_from_db()
    assert model.source_run == other_run


@pytest.mark.django_db
def test_every_route_the_scope_allows_is_one_rlab_serves():
    served = set()

    def walk(patterns, prefix: str = "") -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern).removeprefix("^")  # as Django joins them
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, route)
            else:
                served.add(route)

    walk(get_resolver().url_patterns)
    assert {route for _, route in RUN_TOKEN_ROUTES} <= served


# Its status stays the worker's ---------------------------------------------------------------

@pytest.mark.django_db
def test_an_end_reported_by_the_process_is_accepted_and_changes_nothing(client, run, token,
                                                                       project, caplog):
    with caplog.at_level(logging.INFO):
        for status in ("FINISHED", "FAILED", "KILLED", "RUNNING"):
            answer = mlflow_post(client, project.pk, "runs/update", token,
                                 {"run_id": str(run.pk), "status": status})
            assert answer.status_code == 200
            assert answer.json()["run_info"]["status"] == "RUNNING"
        finished = client.post(f"/api/runs/{run.pk}/finish", json.dumps({"status": "failed"}),
                               content_type="application/json", **bearer(token))
        assert finished.status_code == 200
        assert finished.json()["status"] == "running"
    for call in ("heartbeat", "resume"):  # the worker's heartbeat is the one that counts
        answer = client.post(f"/api/runs/{run.pk}/{call}", **bearer(token))
        assert answer.status_code == 200
        assert answer.json()["status"] == "running"
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.heartbeat_at is None
    assert ApiToken.objects.get(run=run).revoked_at is None
    assert f"script run {run.pk}: its process reported the status FINISHED" in caplog.text


# Its end -------------------------------------------------------------------------------------

def refused_everywhere(client: Client, run: Run, token: str) -> None:
    project_id = run.experiment.project_id
    for answer in (client.get(f"/api/runs/{run.pk}", **bearer(token)),
                   client.post(f"/api/runs/{run.pk}/metrics", "{}",
                               content_type="application/json", **bearer(token)),
                   mlflow_get(client, project_id, "runs/get", token, run_id=run.pk),
                   mlflow_post(client, project_id, "runs/log-batch", token,
                               {"run_id": str(run.pk)}),
                   client.get("/", **bearer(token))):
        assert answer.status_code == 401
        assert "invalid or revoked token" in answer.content.decode().lower()


@pytest.mark.django_db
@pytest.mark.parametrize("end", ["fail", "succeed", "cancel"])
def test_its_run_ending_revokes_it(client, run, token, user, end,
                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        ended = {"fail": lambda: run_fail(run_id=run.pk, error_message="exit code 1"),
                 "succeed": lambda: run_succeed(run_id=run.pk),
                 "cancel": lambda: run_cancel(run=run, user=user)}[end]()
    assert ended
    assert ApiToken.objects.get(run=run).revoked_at is not None
    refused_everywhere(client, run, token)


@pytest.mark.django_db
def test_a_token_whose_run_ended_is_refused_though_its_row_was_not_revoked(client, run, token):
    Run.objects.filter(pk=run.pk).update(status=RunStatus.INTERRUPTED)  # the signal's write lost
    assert ApiToken.objects.get(run=run).revoked_at is None
    refused_everywhere(client, run, token)


@pytest.mark.django_db
def test_a_revoked_run_token_is_refused(client, run, token):
    from webapp.api.run_tokens import run_tokens_revoke

    assert run_tokens_revoke(run_id=run.pk) == 1
    refused_everywhere(client, run, token)


@pytest.mark.django_db
def test_a_deleted_run_takes_its_tokens_along(run, token):
    Run.objects.filter(pk=run.pk).delete()
    assert not ApiToken.objects.filter(prefix=token.split("_")[1]).exists()


# The user's tokens page ----------------------------------------------------------------------

@pytest.mark.django_db
def test_the_tokens_page_neither_lists_nor_revokes_a_runs_token(signed_in, run, token, user):
    token_create(user=user, name="laptop")
    row = ApiToken.objects.get(run=run)
    page = signed_in.get("/settings/tokens/").content.decode()
    assert "laptop" in page
    assert row.prefix not in page
    assert signed_in.post(f"/settings/tokens/{row.pk}/revoke/").status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None
