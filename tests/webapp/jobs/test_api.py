"""The job template API: list with parameter specs, read one, launch one with values; outsiders
get 404, viewers 403, and a bad value is a 422 naming it."""

import json

import pytest
from django.test import Client

from webapp.api.tokens import token_create
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    def as_user(user):
        token = token_create(user=user, name="test")[1]
        client = Client(headers={"Authorization": f"Bearer {token}"})

        def call(method, path, body=None, **params):
            if method == "get":
                return client.get(f"/api{path}", params)
            return client.post(f"/api{path}", json.dumps(body or {}),
                               content_type="application/json")
        return call
    return as_user


def test_templates_are_listed_with_their_parameter_specs(api, user, template, team):
    listed = api(user)("get", "/job-templates", team_id=team.pk).json()
    assert [t["name"] for t in listed] == ["TRL GRPO"]
    lr = listed[0]["parameters"][0]
    assert (lr["name"], lr["type"], lr["min"], lr["max"]) == ("lr", "float", 0, 0.1)
    assert listed[0]["resumable"] is True
    assert api(user)("get", f"/job-templates/{template.pk}").json()["devices"] == "{procs}"


def test_a_member_launches_a_template_into_a_queued_run(api, member_of, template, project):
    response = api(member_of("member"))("post", f"/job-templates/{template.pk}/launch",
                                        {"project_id": project.pk,
                                         "values": {"lr": 0.01, "procs": "2"}, "priority": 3})
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.status, run.devices, run.priority) == (RunStatus.QUEUED, 2, 3)
    assert response.json()["config"]["script"]["argv"][3] == "2"


def test_a_bad_value_is_a_422_naming_it(api, user, template, project):
    response = api(user)("post", f"/job-templates/{template.pk}/launch",
                         {"project_id": project.pk, "values": {"lr": 5, "nope": 1}})
    assert response.status_code == 422
    where = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert where == {("body", "values", "lr"), ("body", "values", "nope")}
    assert not Run.objects.exists()


@pytest.mark.parametrize("values", [{"lr": "1\u0000"}, {"procs": 10**40}])
def test_nul_and_huge_values_are_refused(api, user, template, project, values):
    response = api(user)("post", f"/job-templates/{template.pk}/launch",
                         {"project_id": project.pk, "values": values})
    assert response.status_code == 422
    assert not Run.objects.exists()


def test_a_viewer_cannot_launch(api, member_of, template, project):
    response = api(member_of("viewer"))("post", f"/job-templates/{template.pk}/launch",
                                        {"project_id": project.pk})
    assert response.status_code == 403


def test_another_team_sees_no_template(api, other_user, template, team):
    call = api(other_user)
    assert call("get", f"/job-templates/{template.pk}").status_code == 404
    assert call("get", "/job-templates").json() == []
    assert call("get", "/job-templates", team_id=team.pk).status_code == 404
    assert call("post", f"/job-templates/{template.pk}/launch",
                {"project_id": 1}).status_code == 404
