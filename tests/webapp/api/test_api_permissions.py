"""Every API operation, as every kind of caller, with the web pages' rules: no or a bad token is
401, an outsider gets 404, a viewer reads and gets 403 on writes, members and admins write.
Callers are scripts: Django's CSRF check is enforced, as for any client, and they send no CSRF
token, which only a browser's session needs.

A new operation fails `test_every_operation_is_in_the_matrix` until its row is added here.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from training.spec.config import RunConfig
from webapp.api.api import api
from webapp.api.tokens import token_create
from webapp.jobs.services import job_template_create
from webapp.runs.services import run_launch

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "bad token", "outsider", "viewer", "member", "admin"]

READ = {"outsider": 404, "viewer": 200, "member": 200, "admin": 200}
SIGNED_IN = {"outsider": 200, "viewer": 200, "member": 200, "admin": 200}
CREATE = {"outsider": 404, "viewer": 403, "member": 201, "admin": 201}
WRITE = {"outsider": 404, "viewer": 403, "member": 200, "admin": 200}
LAUNCHED_RUN = {"outsider": 404, "viewer": 403, "member": 409, "admin": 409}
# Deleting: admins only (a member may delete runs they launched, and the admin launched this
# one); the world's run is queued, so its deletion, and its parents', is refused with 409.
DELETE_ACTIVE = {"outsider": 404, "viewer": 403, "member": 403, "admin": 409}

EXPERIMENT = {"name": "from the api", "config": {"max_steps": 2}}
METRICS = {"points": [{"key": "reward/mean", "step": 1, "value": 0.5}]}
SWEEP = {"experiment": "grpo-small", "name": "from the api", "method": "grid", "budget": 1,
         "max_concurrent": 1, "objective": {"metric": "reward/mean", "direction": "maximize"},
         "axes": {"beta": {"values": [0.0]}}}
ROLLOUTS = {"step": 1, "items": [{"prompt": "1+1", "completion": "2", "reward": 1.0}]}

# (method, path) -> (body, expected status per role)
MATRIX = {
    ("get", "/api/projects"): (None, SIGNED_IN),
    ("get", "/api/projects/{project_id}"): (None, READ),
    ("get", "/api/projects/{project_id}/experiments"): (None, READ),
    ("post", "/api/projects/{project_id}/experiments"): (EXPERIMENT, CREATE),
    ("get", "/api/experiments/{experiment_id}"): (None, READ),
    ("post", "/api/experiments/{experiment_id}/runs"): ({}, CREATE),
    ("get", "/api/runs"): (None, SIGNED_IN),
    ("get", "/api/runs/{run_id}"): (None, READ),
    ("post", "/api/runs/{run_id}/cancel"): (None, WRITE),
    ("get", "/api/runs/{run_id}/checkpoints"): (None, READ),
    ("post", "/api/runs/{run_id}/metrics"): (METRICS, WRITE),
    ("get", "/api/runs/{run_id}/metrics"): (None, READ),
    ("post", "/api/runs/{run_id}/rollouts"): (ROLLOUTS, WRITE),
    # A one-line veRL dump: sent as the body, JSON serves as JSON lines.
    ("post", "/api/runs/{run_id}/rollouts/import"): (
        {"input": "1+1", "output": "2", "score": 1.0, "step": 1}, WRITE),
    ("get", "/api/runs/{run_id}/rollouts"): (None, READ),
    ("get", "/api/runs/{run_id}/logs"): (None, READ),
    ("post", "/api/projects/{project_id}/tracked-runs"): ({"experiment": "script"}, CREATE),
    # The world's run was launched from rlab: only its worker reports for it, so 409 past the
    # access check (tests/webapp/api/test_tracked_runs.py covers tracked runs).
    ("post", "/api/runs/{run_id}/params"): ({"params": {"lr": 1}}, LAUNCHED_RUN),
    ("post", "/api/runs/{run_id}/finish"): ({}, LAUNCHED_RUN),
    ("post", "/api/runs/{run_id}/heartbeat"): ({}, LAUNCHED_RUN),
    ("post", "/api/runs/{run_id}/resume"): ({}, LAUNCHED_RUN),
    ("delete", "/api/runs/{run_id}"): (None, DELETE_ACTIVE),
    ("delete", "/api/experiments/{experiment_id}"): (None, DELETE_ACTIVE),
    ("delete", "/api/projects/{project_id}"): (None, DELETE_ACTIVE),
    ("get", "/api/queue"): (None, SIGNED_IN),
    # The admin launched the world's run: a member may set the priority of their own runs only.
    ("post", "/api/runs/{run_id}/priority"): (
        {"priority": 3}, {"outsider": 404, "viewer": 403, "member": 403, "admin": 200}),
    ("post", "/api/projects/{project_id}/sweeps"): (SWEEP, CREATE),
    ("get", "/api/sweeps/{sweep_id}"): (None, READ),
    ("post", "/api/sweeps/{sweep_id}/cancel"): (None, WRITE),
    ("get", "/api/job-templates"): (None, SIGNED_IN),
    ("get", "/api/job-templates/{template_id}"): (None, READ),
    # The world's project_id is put in the body (test_access).
    ("post", "/api/job-templates/{template_id}/launch"): ({"project_id": "{project_id}"}, CREATE),
}


def call(client: Client, method: str, path: str, body, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method in ("get", "delete"):
        return getattr(client, method)(path, headers=headers)
    return client.post(path, json.dumps(body) if body is not None else "",
                       content_type="application/json", headers=headers)


def test_every_operation_is_in_the_matrix():
    schema = api.get_openapi_schema()
    operations = {(method, path) for path, methods in schema["paths"].items()
                  for method in methods}
    assert operations == set(MATRIX)


@pytest.fixture
def world(user, team, project, experiment, member_of, django_user_model):
    """The team's project, experiment and a queued run, whose admin is `user`; one token per
    kind of caller."""
    run = run_launch(experiment=experiment, user=user)
    users = {
        "outsider": django_user_model.objects.create_user("outsider", password="pw-outsider-1"),
        "viewer": member_of("viewer"),
        "member": member_of("member"),
        "admin": user,
    }
    tokens = {role: token_create(user=someone, name="test")[1] for role, someone in users.items()}
    tokens["anonymous"] = None
    tokens["bad token"] = tokens["admin"][:-2] + "xx"
    template = job_template_create(team=team, user=user, fields={
        "name": "world", "command": "echo {n}",
        "parameters": [{"name": "n", "type": "int", "default": 1}]})
    ids = {"project_id": project.pk, "experiment_id": experiment.pk, "run_id": run.pk,
           "template_id": template.pk}
    return tokens, ids


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,path", sorted(MATRIX))
def test_access(world, method, path, role):
    tokens, ids = world
    body, expected = MATRIX[(method, path)]
    if "{sweep_id}" in path:
        ids = {**ids, "sweep_id": sweep_of(ids["project_id"])}
    url = path.format(**ids)
    if isinstance(body, dict) and body.get("project_id") == "{project_id}":
        body = {**body, "project_id": ids["project_id"]}
    response = call(Client(enforce_csrf_checks=True), method, url, body, tokens[role])
    if role in ("anonymous", "bad token"):
        assert response.status_code == 401, f"{role} {method.upper()} {url}"
        assert "invalid or revoked token" in response.json()["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")
    else:
        assert response.status_code == expected[role], (
            f"{role} {method.upper()} {url}: {response.content[:300]!r}")


def sweep_of(project_id: int) -> int:
    """A sweep of the world's project, made only for the operations on a sweep."""
    from webapp.projects.models import Project
    from webapp.sweeps.definition import definition_parse
    from webapp.sweeps.services import sweep_create

    project = Project.objects.get(pk=project_id)
    definition = definition_parse({**SWEEP, "name": "world"}, project=project)
    admin = project.team.memberships.get(role="admin").user
    return sweep_create(definition=definition, user=admin).pk


def test_a_viewer_is_told_which_role_a_write_needs(client, world, member_of):
    tokens, ids = world
    response = call(client, "post", f"/api/runs/{ids['run_id']}/cancel", None, tokens["viewer"])
    assert response.json() == {"detail": "This needs the member role in the team."}


def test_an_outsider_cannot_tell_a_hidden_run_from_a_missing_one(client, world):
    tokens, ids = world
    hidden = call(client, "get", f"/api/runs/{ids['run_id']}", None, tokens["outsider"])
    missing = call(client, "get", f"/api/runs/{ids['run_id'] + 1000}", None, tokens["outsider"])
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_an_outsider_lists_nothing(client, world):
    tokens, _ = world
    assert call(client, "get", "/api/projects", None, tokens["outsider"]).json() == []
    assert call(client, "get", "/api/runs", None, tokens["outsider"]).json() == {
        "items": [], "count": 0}


def test_a_revoked_token_is_401(client, world, user):
    from webapp.api.tokens import token_revoke

    row, token = token_create(user=user, name="old")
    token_revoke(token=row)
    assert call(client, "get", "/api/projects", None, token).status_code == 401


def test_the_browser_session_reads_but_must_send_the_csrf_token_to_write(world, user):
    """The interactive docs use the session; a page elsewhere must not be able to write with it."""
    _, ids = world
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(f"/api/runs/{ids['run_id']}").status_code == 200
    response = browser.post(f"/api/runs/{ids['run_id']}/cancel")
    assert response.status_code == 403
    browser.get("/api/docs")  # sets the CSRF cookie, as the docs page does
    token = browser.cookies["csrftoken"].value
    response = browser.post(f"/api/runs/{ids['run_id']}/cancel", headers={"X-CSRFToken": token})
    assert response.status_code == 200


def test_a_write_as_the_member_acts_as_that_member(client, world, project):
    tokens, ids = world
    response = call(client, "post", f"/api/projects/{ids['project_id']}/experiments",
                    {"name": "by member", "config": RunConfig(max_steps=2).to_dict()},
                    tokens["member"])
    assert response.status_code == 201
    assert response.json()["author"] == "member-user"
