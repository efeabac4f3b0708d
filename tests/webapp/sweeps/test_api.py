"""The sweep API: POST /api/projects/{id}/sweeps takes the YAML's definition as JSON, GET
/api/sweeps/{id} reads it, POST /api/sweeps/{id}/cancel cancels it with its runs."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from webapp.api.tokens import token_create
from webapp.runs.models import Run, RunStatus
from webapp.sweeps.models import Sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user):
    token = token_create(user=user, name="test")[1]
    client = Client()

    def call(method: str, path: str, body=None):
        headers = {"Authorization": f"Bearer {token}"}
        if method == "get":
            return client.get(f"/api{path}", headers=headers)
        return client.post(f"/api{path}", json.dumps(body or {}),
                           content_type="application/json", headers=headers)
    return call


def test_a_sweep_posted_as_json_launches_its_runs_and_reads_back(api, project, definition):
    response = api("post", f"/projects/{project.pk}/sweeps", definition())
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["name"] == "lr sweep" and created["status"] == "running"
    assert created["progress"] == {"planned": 4, "succeeded": 0, "running": 0, "queued": 4,
                                   "pruned": 0, "failed": 0, "cancelled": 0}
    assert len(created["run_ids"]) == 4 and created["best"] == []
    assert created["url"] == f"/sweeps/{created['id']}/"
    assert api("get", f"/sweeps/{created['id']}").json()["run_ids"] == created["run_ids"]


def test_a_bad_definition_is_a_422_naming_each_place_and_creates_nothing(api, project,
                                                                        definition):
    response = api("post", f"/projects/{project.pk}/sweeps",
                   definition(budget=0, axes={"beta": {"values": [0.0, 99]}}))
    assert response.status_code == 422
    assert response.json() == {"detail": [
        {"loc": ["body", "budget"], "msg": "must be at least 1", "type": "value_error"},
        {"loc": ["body", "axes", "beta"], "msg": "value 99: must be at most 10",
         "type": "value_error"}]}
    assert not Sweep.objects.exists() and not Run.objects.exists()


def test_cancel_ends_the_sweep_and_its_runs_then_is_a_409(api, project, definition):
    created = api("post", f"/projects/{project.pk}/sweeps", definition()).json()
    cancelled = api("post", f"/sweeps/{created['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.CANCELLED}
    again = api("post", f"/sweeps/{created['id']}/cancel")
    assert again.status_code == 409
    assert again.json() == {"detail": "The sweep lr sweep has ended already."}
