"""The REST API's endpoints, called as a script calls them: JSON bodies and a bearer token, through
the real views, services and Postgres. Who may call what is tests/webapp/api/
test_api_permissions.py; here the caller is the team's admin unless a test says otherwise."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from training.spec.config import RunConfig
from webapp.api.routers import metrics as metrics_router
from webapp.api.tokens import token_create
from webapp.experiments.models import Experiment
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs.ingestion import CheckpointSaved, checkpoints_ingest, rollouts_ingest
from webapp.runs.models import MetricPoint, Rollout
from webapp.runs.services import run_cancel, run_fail, run_launch
from webapp.teams.services import team_create

pytestmark = pytest.mark.django_db


class Api:
    """Django's test client with a bearer token, speaking JSON."""

    def __init__(self, token: str):
        self.client = Client(headers={"Authorization": f"Bearer {token}"})

    def get(self, path: str, **params):
        return self.client.get(path, params)

    def post(self, path: str, body=None):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body or {})
        return self.client.post(path, data, content_type="application/json")


@pytest.fixture
def api(user) -> Api:
    return Api(token_create(user=user, name="tests")[1])


@pytest.fixture
def run(experiment, user):
    return run_launch(experiment=experiment, user=user)


@pytest.fixture
def evaluation(project, user) -> Experiment:
    return experiment_create(project=project, author=user, name="held-out sums", description="",
                             config={"samples": 8}, kind="evaluation")


def errors(response) -> dict[tuple, str]:
    """A 422's errors as {loc: message}."""
    assert response.status_code == 422, response.content
    return {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}


# Projects ----------------------------------------------------------------------------------------

def test_projects_lists_the_projects_of_the_callers_teams_only(api, project, other_user):
    other_team = team_create(name="Elsewhere", user=other_user)
    project_create(team=other_team, name="Hidden", description="", user=other_user)
    body = api.get("/api/projects").json()
    assert [p["name"] for p in body] == ["Arithmetic"]
    assert body[0]["team"] == {"id": project.team_id, "name": "Reasoning"}
    assert body[0]["url"] == project.get_absolute_url()


def test_a_project_is_read_by_id(api, project):
    body = api.get(f"/api/projects/{project.pk}").json()
    assert (body["id"], body["name"], body["description"]) == (project.pk, "Arithmetic", "sums")


# Experiments -------------------------------------------------------------------------------------

def test_an_experiment_is_created_with_its_config_completed_by_the_defaults(api, project, user):
    response = api.post(f"/api/projects/{project.pk}/experiments",
                        {"name": "  grpo-api  ", "description": "from a script",
                         "config": {"max_steps": 7, "learning_rate": 1e-5}})
    assert response.status_code == 201
    body = response.json()
    experiment = Experiment.objects.get(pk=body["id"])
    assert (experiment.name, experiment.kind, experiment.author) == ("grpo-api", "training", user)
    assert body["config"] == experiment.config == RunConfig(max_steps=7,
                                                           learning_rate=1e-5).to_dict()


def test_an_evaluation_is_created_without_a_model(api, project):
    response = api.post(f"/api/projects/{project.pk}/experiments",
                        {"name": "eval", "kind": "evaluation", "config": {"samples": 16}})
    assert response.status_code == 201
    assert response.json()["kind"] == "evaluation"
    assert response.json()["config"]["samples"] == 16
    assert "model" not in response.json()["config"]


def test_an_invalid_config_is_422_naming_every_bad_setting(api, project):
    response = api.post(f"/api/projects/{project.pk}/experiments",
                        {"name": "bad", "config": {"max_steps": 0, "learning_rte": 1e-5}})
    found = errors(response)
    assert set(found) == {("body", "config", "max_steps"), ("body", "config", "learning_rte")}
    assert found[("body", "config", "learning_rte")] == "unknown setting"
    assert not Experiment.objects.filter(name="bad").exists()


def test_a_body_that_is_not_an_experiment_is_422(api, project):
    found = errors(api.post(f"/api/projects/{project.pk}/experiments",
                            {"name": " ", "kind": "finetune", "colour": "red"}))
    assert {("body", "payload", "name"), ("body", "payload", "kind"),
            ("body", "payload", "colour")} <= set(found)


def test_a_name_the_project_already_uses_is_409(api, project, experiment):
    response = api.post(f"/api/projects/{project.pk}/experiments", {"name": experiment.name})
    assert response.status_code == 409
    assert "already has an experiment or evaluation named 'grpo-small'" in response.json()[
        "detail"]


def test_a_projects_experiments_are_listed_newest_first(api, project, experiment, evaluation):
    body = api.get(f"/api/projects/{project.pk}/experiments").json()
    assert [e["name"] for e in body] == ["held-out sums", "grpo-small"]
    assert api.get(f"/api/experiments/{experiment.pk}").json()["config"] == experiment.config


# Launching ---------------------------------------------------------------------------------------

def test_launching_a_training_experiment_queues_a_run_of_its_config(api, experiment, user):
    response = api.post(f"/api/experiments/{experiment.pk}/runs")
    assert response.status_code == 201
    body = response.json()
    assert (body["number"], body["status"], body["active"], body["launched_by"]) == (
        1, "queued", True, "ada")
    assert body["config"] == experiment.config
    assert body["evaluated_checkpoint"] is None
    assert body["url"] == f"/runs/{body['id']}/"


def test_an_evaluation_job_runs_on_a_model(api, evaluation):
    response = api.post(f"/api/experiments/{evaluation.pk}/runs",
                        {"model": "builtin:smollm2-135m-instruct"})
    assert response.status_code == 201
    assert response.json()["config"]["model"] == "builtin:smollm2-135m-instruct"
    assert response.json()["kind"] == "evaluation"


def test_an_evaluation_job_runs_on_a_checkpoint_and_names_it(api, evaluation, run, tmp_path):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    checkpoints_ingest(run_id=run.pk, checkpoints=[CheckpointSaved(step=2, path=str(folder))])
    checkpoint = run.checkpoints.get()
    response = api.post(f"/api/experiments/{evaluation.pk}/runs",
                        {"checkpoint_id": checkpoint.pk})
    assert response.status_code == 201
    job = api.get(f"/api/runs/{response.json()['id']}").json()
    assert job["evaluated_checkpoint"]["id"] == checkpoint.pk
    assert job["evaluated_checkpoint"]["step"] == 2
    assert job["config"]["model"] == f"checkpoint:{checkpoint.pk}"


def test_launch_errors_are_the_services_reasons(api, experiment, evaluation, run, tmp_path):
    assert errors(api.post(f"/api/experiments/{evaluation.pk}/runs")) == {
        ("body",): "An evaluation runs on a model or checkpoint: choose one."}
    assert errors(api.post(f"/api/experiments/{experiment.pk}/runs", {"model": "x"})) == {
        ("body",): "grpo-small is a training experiment, not an evaluation."}
    checkpoints_ingest(run_id=run.pk, checkpoints=[
        CheckpointSaved(step=1, path=str(tmp_path / "gone"))])
    gone = errors(api.post(f"/api/experiments/{evaluation.pk}/runs",
                           {"checkpoint_id": run.checkpoints.get().pk}))
    assert "is gone" in gone[("body",)]
    assert ("body", "payload") in errors(api.post(
        f"/api/experiments/{evaluation.pk}/runs", {"model": "x", "checkpoint_id": 1}))


def test_a_checkpoint_the_caller_cannot_see_is_404(api, evaluation, other_user, tmp_path):
    team = team_create(name="Elsewhere", user=other_user)
    project = project_create(team=team, name="Theirs", description="", user=other_user)
    theirs = experiment_create(project=project, author=other_user, name="t", description="",
                               config=RunConfig(max_steps=2).to_dict())
    their_run = run_launch(experiment=theirs, user=other_user)
    checkpoints_ingest(run_id=their_run.pk, checkpoints=[
        CheckpointSaved(step=1, path=str(tmp_path))])
    response = api.post(f"/api/experiments/{evaluation.pk}/runs",
                        {"checkpoint_id": their_run.checkpoints.get().pk})
    assert response.status_code == 404


# Runs --------------------------------------------------------------------------------------------

def test_runs_are_listed_newest_first_a_page_at_a_time(api, experiment, evaluation, user):
    runs = [run_launch(experiment=experiment, user=user) for _ in range(3)]
    run_cancel(run=runs[0], user=user)
    first = api.get("/api/runs", limit=2).json()
    assert first["count"] == 3
    assert [r["id"] for r in first["items"]] == [runs[2].pk, runs[1].pk]
    second = api.get("/api/runs", limit=2, offset=2).json()
    assert [r["id"] for r in second["items"]] == [runs[0].pk]
    cancelled = api.get("/api/runs", status="cancelled").json()
    assert [r["id"] for r in cancelled["items"]] == [runs[0].pk]
    assert api.get("/api/runs", experiment=evaluation.pk).json()["count"] == 0
    assert api.get("/api/runs", project=experiment.project_id).json()["count"] == 3


def test_an_unknown_status_is_422(api):
    assert ("query", "status") in errors(api.get("/api/runs", status="exploded"))


def test_a_run_shows_its_state_and_why_it_failed(api, run):
    run_fail(run_id=run.pk, error_message="CUDA out of memory: lower micro_batch_size.")
    body = api.get(f"/api/runs/{run.pk}").json()
    assert (body["status"], body["active"]) == ("failed", False)
    assert body["error"] == "CUDA out of memory: lower micro_batch_size."
    assert body["finished_at"] is not None
    assert body["progress"] == {"step": 0, "total": 0, "fraction": 0.0}
    assert body["name"] == "grpo-small #1"


def test_a_run_is_cancelled_once(api, run):
    response = api.post(f"/api/runs/{run.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api.post(f"/api/runs/{run.pk}/cancel")
    assert again.status_code == 409
    assert again.json() == {"detail": "Run grpo-small #1 has already ended (cancelled)."}


def test_checkpoints_are_listed_newest_first_with_their_size(api, run, tmp_path):
    kept = tmp_path / "checkpoint-4"
    kept.mkdir()
    (kept / "model.safetensors").write_bytes(b"x" * 1234)
    checkpoints_ingest(run_id=run.pk, checkpoints=[
        CheckpointSaved(step=2, path=str(tmp_path / "checkpoint-2")),
        CheckpointSaved(step=4, path=str(kept), final=True)])
    body = api.get(f"/api/runs/{run.pk}/checkpoints").json()
    assert [(c["step"], c["final"], c["size_bytes"]) for c in body] == [
        (4, True, 1234), (2, False, None)]


# Metrics -----------------------------------------------------------------------------------------

def stored(run) -> dict[tuple[str, int], float]:
    return {(p.key, p.step): p.value for p in MetricPoint.objects.filter(run=run)}


def test_points_are_stored_from_rows_and_from_columns(api, run):
    response = api.post(f"/api/runs/{run.pk}/metrics", {
        "points": [{"key": "reward/mean", "step": 1, "value": 0.25},
                   {"key": "reward/mean", "step": 2, "value": 0.5}],
        "series": [{"key": "kl/mean", "steps": [1, 2, 3], "values": [0.0, 0.01, 0.02]}]})
    assert response.status_code == 200
    assert response.json() == {"received": 5}
    assert stored(run) == {("reward/mean", 1): 0.25, ("reward/mean", 2): 0.5,
                           ("kl/mean", 1): 0.0, ("kl/mean", 2): 0.01, ("kl/mean", 3): 0.02}


def test_a_replayed_batch_changes_nothing_and_a_later_value_replaces(api, run):
    batch = {"points": [{"key": "loss/policy", "step": s, "value": s / 10, "time": 1e9}
                        for s in range(50)]}
    assert api.post(f"/api/runs/{run.pk}/metrics", batch).status_code == 200
    assert api.post(f"/api/runs/{run.pk}/metrics", batch).status_code == 200
    assert len(stored(run)) == 50
    overlapping = {"series": [{"key": "loss/policy", "steps": [49, 50], "values": [9.0, 5.0]}]}
    assert api.post(f"/api/runs/{run.pk}/metrics", overlapping).status_code == 200
    points = stored(run)
    assert len(points) == 51
    assert points[("loss/policy", 48)] == 4.8
    assert points[("loss/policy", 49)] == 9.0  # timed now, after the first: the latest value
    assert points[("loss/policy", 50)] == 5.0


def test_times_are_read_as_iso_8601_or_unix_seconds(api, run):
    api.post(f"/api/runs/{run.pk}/metrics", {
        "points": [{"key": "a", "step": 1, "value": 1.0, "time": "2026-01-02T03:04:05+00:00"},
                   {"key": "a", "step": 2, "value": 1.0, "time": 1767322000.5}],
        "series": [{"key": "b", "steps": [1], "values": [2.0], "times": [1767322000]}]})
    times = {(p.key, p.step): p.wall_time for p in MetricPoint.objects.filter(run=run)}
    assert times[("a", 1)] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert times[("a", 2)].timestamp() == 1767322000.5
    assert times[("b", 1)].timestamp() == 1767322000


def test_invalid_points_are_422_naming_each_and_nothing_is_stored(api, run):
    body = json.dumps({"points": [
        {"key": "ok", "step": 1, "value": 1.0},
        {"key": "x" * 251, "step": 1, "value": 1.0},
        {"key": "nan", "step": 1, "value": math.nan},
        {"key": "neg", "step": -1, "value": 1.0},
        {"key": "typo", "step": 1, "vaule": 1.0},
        {"key": "naive", "step": 1, "value": 1.0, "time": "2026-01-02T03:04:05"},
    ], "series": [{"key": "short", "steps": [1, 2], "values": [1.0]}]})
    found = errors(api.post(f"/api/runs/{run.pk}/metrics", body))
    assert {loc[:3] for loc in found} >= {("body", "points", 1), ("body", "points", 2),
                                          ("body", "points", 3), ("body", "points", 4),
                                          ("body", "points", 5), ("body", "series", 0)}
    assert not any(loc[:3] == ("body", "points", 0) for loc in found)
    assert "as long as each other" in found[("body", "series", 0)]
    assert stored(run) == {}


def test_a_422_lists_the_first_100_errors_and_counts_the_rest(api, run):
    body = {"points": [{"key": "", "step": s, "value": 0.0} for s in range(150)]}
    detail = api.post(f"/api/runs/{run.pk}/metrics", body).json()["detail"]
    assert len(detail) == 101
    assert detail[-1]["msg"] == "…and 50 more errors."


def test_more_than_100k_points_in_one_request_is_422(api, run):
    body = {"series": [{"key": "big", "steps": list(range(100_001)),
                        "values": [0.0] * 100_001}]}
    found = errors(api.post(f"/api/runs/{run.pk}/metrics", body))
    assert "send at most 100,000 at a time" in found[("body",)]
    assert stored(run) == {}


def test_a_body_that_is_not_json_is_400_and_one_too_large_is_413(api, run, monkeypatch):
    response = api.post(f"/api/runs/{run.pk}/metrics", "{points: [")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not JSON")
    monkeypatch.setattr(metrics_router, "MAX_BODY_BYTES", 100)
    big = {"points": [{"key": "k", "step": s, "value": 0.0} for s in range(10)]}
    assert api.post(f"/api/runs/{run.pk}/metrics", big).status_code == 413


def test_writes_to_a_run_that_has_ended_are_409(api, run, user):
    run_cancel(run=run, user=user)
    response = api.post(f"/api/runs/{run.pk}/metrics",
                        {"points": [{"key": "a", "step": 1, "value": 1.0}]})
    assert response.status_code == 409
    assert response.json() == {"detail": "Run grpo-small #1 has ended (cancelled): it takes "
                                         "no more data. Log to a new run."}
    response = api.post(f"/api/runs/{run.pk}/rollouts", {"step": 1, "items": [
        {"prompt": "p", "completion": "c", "reward": 1.0}]})
    assert response.status_code == 409
    assert stored(run) == {} and not Rollout.objects.filter(run=run).exists()


def test_series_read_is_the_run_pages_metrics_json(api, run, signed_in):
    api.post(f"/api/runs/{run.pk}/metrics", {"series": [
        {"key": "reward/mean", "steps": list(range(3000)), "values": [s / 3000 for s in
                                                                    range(3000)]},
        {"key": "kl/mean", "steps": [0, 1], "values": [0.0, 0.5]}]})
    page = signed_in.get(reverse("live:metrics", args=[run.pk])).json()
    body = api.get(f"/api/runs/{run.pk}/metrics").json()
    assert body == page
    assert body["keys"] == ["reward/mean", "kl/mean"] and body["width"] > 1
    assert body["active"] is True


def test_series_read_takes_keys_and_a_step_range(api, run):
    api.post(f"/api/runs/{run.pk}/metrics", {"series": [
        {"key": "a", "steps": [1, 2, 3, 4], "values": [1.0, 2.0, 3.0, 4.0]},
        {"key": "b", "steps": [1], "values": [9.0]}]})
    body = api.get(f"/api/runs/{run.pk}/metrics", keys="a", start=2, end=3).json()
    assert body["keys"] == ["a", "b"]
    assert list(body["series"]) == ["a"]
    steps, values, _ = body["series"]["a"]
    assert (steps, values) == ([2, 3], [2.0, 3.0])


# Rollouts ----------------------------------------------------------------------------------------

def rollout(group: int, sample: int, reward: float, **fields) -> dict:
    return {"prompt": f"{group} + 1?", "completion": str(group + 1), "reward": reward,
            "group": group, "sample_index": sample, "prompt_id": f"{group}+1", **fields}


def test_rollouts_are_stored_and_read_back(api, run):
    item = rollout(0, 1, 1.0, rewards={"correct": 1.0}, advantage=0.5, completion_tokens=2,
                   truncated=True, extra={"answer": "1"},
                   tokens={"text": ["1", "!"], "logprob": [-0.1, -2.0], "conflict": [1.0, 0.0]})
    response = api.post(f"/api/runs/{run.pk}/rollouts",
                        {"step": 3, "items": [item, rollout(0, 0, 0.0)]})
    assert response.json() == {"received": 2}
    body = api.get(f"/api/runs/{run.pk}/rollouts").json()
    assert body["next_cursor"] is None
    first, second = body["items"]
    assert (first["sample_index"], second["sample_index"]) == (0, 1)
    assert {k: second[k] for k in item} == {**item, "tokens": {
        "text": ["1", "!"], "logprob": [-0.1, -2.0], "conflict": [1.0, 0.0]}}
    assert second["step"] == 3
    assert second["group_degenerate"] is False  # rewards 0 and 1 in the same group


def test_a_replayed_rollout_batch_changes_nothing(api, run):
    batch = {"step": 1, "items": [rollout(0, 0, 1.0), rollout(0, 1, 1.0)]}
    api.post(f"/api/runs/{run.pk}/rollouts", batch)
    batch["items"][0]["completion"] = "changed"
    assert api.post(f"/api/runs/{run.pk}/rollouts", batch).status_code == 200
    assert sorted(Rollout.objects.filter(run=run).values_list("completion", flat=True)) == [
        "1", "1"]


def test_invalid_rollouts_are_422(api, run):
    found = errors(api.post(f"/api/runs/{run.pk}/rollouts", {"step": -1, "items": [
        rollout(0, 0, 1.0), rollout(0, 0, 0.5),
        {"prompt": "p", "completion": "c", "reward": "high"},
        rollout(1, 0, 1.0, tokens={"text": ["a", "b"], "entropy": [0.1]}),
        rollout(2, 0, 1.0, tokens={"text": ["a"], "process": [0.1, 0.2]}),
    ]}))
    assert ("body", "payload", "step") in found
    assert ("body", "payload", "items", 2, "reward") in found
    assert "tokens.entropy has 1 values for 2 tokens" in found[
        ("body", "payload", "items", 3, "tokens")]
    assert "tokens.process has 2 values for 1 tokens" in found[
        ("body", "payload", "items", 4, "tokens")]
    duplicate = errors(api.post(f"/api/runs/{run.pk}/rollouts", {"step": 1, "items": [
        rollout(0, 0, 1.0), rollout(0, 0, 0.5)]}))
    assert "items 0 and 1 are both group 0, sample 0" in duplicate[("body", "payload")]
    assert not Rollout.objects.filter(run=run).exists()


def test_a_rollout_batch_over_djangos_body_limit_is_413(api, run, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post(f"/api/runs/{run.pk}/rollouts", {"step": 1, "items": [
        rollout(0, 0, 1.0, completion="7" * 2000)]})
    assert response.status_code == 413
    assert response.json()["detail"].endswith("send smaller batches.")


@pytest.fixture
def logged(run):
    """Steps 1-4, two groups of two completions each; the reward is step/10 + group/100."""
    for step in range(1, 5):
        rollouts_ingest(run_id=run.pk, step=step, items=[
            rollout(g, s, step / 10 + g / 100) for g in range(2) for s in range(2)])
    return run


def test_rollouts_are_filtered_by_step_reward_and_prompt(api, logged):
    def keys(**params):
        return [(r["step"], r["group"], r["sample_index"])
                for r in api.get(f"/api/runs/{logged.pk}/rollouts", **params).json()["items"]]

    assert keys(step_min=2, step_max=3) == [(3, 0, 0), (3, 0, 1), (3, 1, 0), (3, 1, 1),
                                            (2, 0, 0), (2, 0, 1), (2, 1, 0), (2, 1, 1)]
    assert keys(min_reward=0.3, max_reward=0.305) == [(3, 0, 0), (3, 0, 1)]
    assert keys(prompt_id="1+1", step_min=4) == [(4, 1, 0), (4, 1, 1)]


def test_a_cursor_pages_through_every_rollout_once(api, logged):
    seen, cursor, pages = [], "", 0
    while True:
        body = api.get(f"/api/runs/{logged.pk}/rollouts", limit=5,
                       **({"cursor": cursor} if cursor else {})).json()
        seen += [(r["step"], r["group"], r["sample_index"]) for r in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        cursor = body["next_cursor"]
    assert pages == 4
    assert seen == sorted(seen, key=lambda k: (-k[0], k[1], k[2]))
    assert len(seen) == len(set(seen)) == 16


def test_a_cursor_that_was_not_given_out_is_422(api, run):
    for cursor in ("abc", "1_2", "-1_0_0", "1_2_3_4"):
        found = errors(api.get(f"/api/runs/{run.pk}/rollouts", cursor=cursor))
        assert ("query", "cursor") in found
