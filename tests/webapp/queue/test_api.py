"""GET /api/queue and POST /api/runs/{id}/priority, as a script calls them."""

from __future__ import annotations

import pytest

from tests.webapp.api.test_endpoints import Api
from tests.webapp.queue.conftest import queued, running
from webapp.api.tokens import token_create
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user) -> Api:
    return Api(token_create(user=user, name="tests")[1])


def test_the_queue_lists_the_users_runs_with_place_priority_and_reason(
        api, experiment, other_experiment, user, other_user):
    queued(other_experiment, other_user, age=30)
    mine = queued(experiment, user, age=20, queue="gpu")
    response = api.get("/api/queue")
    assert response.status_code == 200
    queues = {q["name"]: q for q in response.json()["queues"]}
    assert (queues["cpu"]["queued"], queues["cpu"]["other_teams"], queues["cpu"]["runs"]) == \
        (1, 1, [])
    (entry,) = queues["gpu"]["runs"]
    assert (entry["id"], entry["position"], entry["priority"], entry["experiment"]) == \
        (mine.pk, 1, 0, "grpo-small")
    assert entry["wait_reason"] == "No worker consumes queue gpu: start one with -Q gpu."
    assert "secret-plan" not in response.content.decode()


def test_a_member_sets_their_runs_priority(api, experiment, user):
    run = queued(experiment, user)
    response = api.post(f"/api/runs/{run.pk}/priority", {"priority": 42})
    assert response.status_code == 200
    assert response.json() == {"id": run.pk, "status": "queued", "priority": 42}
    assert Run.objects.get(pk=run.pk).priority == 42


@pytest.mark.parametrize("body", [{"priority": 101}, {"priority": -101}, {"priority": 1.5},
                                  {"priority": "5"}, {"priority": True}, {"priority": None},
                                  {"priority": "\u0000"}, {}])
def test_a_bad_priority_is_a_422_naming_the_field(api, experiment, user, body):
    run = queued(experiment, user)
    response = api.post(f"/api/runs/{run.pk}/priority", body)
    assert response.status_code == 422
    assert any(error["loc"][-1] == "priority" for error in response.json()["detail"])
    assert Run.objects.get(pk=run.pk).priority == 0


def test_a_body_that_is_not_json_is_a_400(api, experiment, user):
    run = queued(experiment, user)
    assert api.post(f"/api/runs/{run.pk}/priority", "{priority").status_code == 400


def test_another_teams_run_is_a_404(api, other_experiment, other_user):
    run = queued(other_experiment, other_user)
    assert api.post(f"/api/runs/{run.pk}/priority", {"priority": 1}).status_code == 404


def test_a_member_may_not_set_another_members_runs_priority(experiment, user, member_of):
    run = queued(experiment, user)
    member = Api(token_create(user=member_of("member"), name="m")[1])
    response = member.post(f"/api/runs/{run.pk}/priority", {"priority": 1})
    assert response.status_code == 403
    assert "admin of the team" in response.json()["detail"]


def test_a_run_no_longer_queued_is_a_409(api, experiment, user):
    run = running(experiment, user)
    response = api.post(f"/api/runs/{run.pk}/priority", {"priority": 1})
    assert response.status_code == 409
    assert "no longer queued" in response.json()["detail"]
