"""Schemathesis fuzzes every operation of the REST API from its own OpenAPI schema, against the
ASGI server as production runs it (tests/stack.py) with a real token: bodies, query strings and
path parameters that fit the schema and many that do not (wrong types, missing fields, NULs,
huge numbers). No request may answer a 5xx, and every answer must be one the schema documents,
with the body it documents.

Path parameters that schemathesis draws as integers are replaced by the ids of real objects, so
that bodies reach the services and the database rather than stopping at a 404; a run that a
request ends (cancel, finish) is replaced by a new one, so that later writes still reach it, and
a DELETE gets objects of its own to delete."""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.stack import start_web
from webapp.api.api import api
from webapp.api.tokens import token_create
from webapp.experiments.services import experiment_create
from webapp.jobs.services import job_template_create
from webapp.projects.services import project_create
from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.models import Run
from webapp.runs.services import run_launch
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

# Per operation and generation mode (schema-conforming, schema-violating), besides the coverage
# phase's boundary cases: about 2.5 minutes for the whole API on two busy cores.
EXAMPLES = 30
# 2xx would ask every request the schema allows to succeed: a config the trainer refuses (422),
# a write to an ended run (409) are allowed answers that the schema cannot express.
SKIPPED_CHECKS = ["positive_data_acceptance"]


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


class World:
    """The objects the fuzzed requests act on, all in one project the token's user administers."""

    def __init__(self, *, user, team, project, experiment):
        self.user = user
        self.team = team
        self.throwaways = 0
        evaluation = experiment_create(project=project, author=user, name="held-out",
                                       description="", config={}, kind="evaluation")
        self.tracked_experiment = tracked_experiment_get_or_create(project=project, user=user,
                                                                   name="script")
        launched = run_launch(experiment=experiment, user=user)
        rollouts_ingest(run_id=launched.pk, step=1, items=[
            {"prompt": "1+1", "completion": "2", "reward": 1.0,
             "tokens": {"text": ["2"], "logprob": [-0.1]}}])
        template = job_template_create(team=team, user=user, fields={
            "name": "fuzzed", "command": "echo {n} {word}",
            "parameters": [{"name": "n", "type": "int", "default": 1, "min": 0, "max": 9},
                           {"name": "word", "type": "str", "default": "x"}]})
        self.ids = {"project_id": project.pk, "experiment_id": experiment.pk,
                    "evaluation_id": evaluation.pk, "run_id": launched.pk,
                    "template_id": template.pk}
        self.tracked_run = self._new_tracked_run()
        self.headers = {"Authorization": f"Bearer {token_create(user=user, name='fuzz')[1]}"}

    def _new_tracked_run(self) -> Run:
        return tracked_run_create(experiment=self.tracked_experiment, user=self.user)

    def _throwaway_ids(self) -> dict[str, int]:
        self.throwaways += 1
        project = project_create(team=self.team, name=f"throwaway {self.throwaways}",
                                 description="", user=self.user)
        experiment = tracked_experiment_get_or_create(project=project, user=self.user,
                                                      name="script")
        run = tracked_run_create(experiment=experiment, user=self.user)
        return {"project_id": project.pk, "experiment_id": experiment.pk, "run_id": run.pk}

    def path_parameters(self, case) -> dict:
        """Real ids for the integers schemathesis drew; what is not an integer stays, to be
        refused. Reads go to the launched run, which has rollouts; writes to a tracked run,
        which takes every write."""
        self.tracked_run.refresh_from_db()
        if self.tracked_run.is_terminal:
            self.tracked_run = self._new_tracked_run()
        real = dict(self.ids)
        if case.method.upper() == "POST":
            real["run_id"] = self.tracked_run.pk
        if case.method.upper() == "DELETE":
            real = self._throwaway_ids()
        if isinstance(case.body, dict) and {"model", "checkpoint_id"} & set(case.body):
            real["experiment_id"] = self.ids["evaluation_id"]
        return {name: real.get(name, value) if isinstance(value, int) else value
                for name, value in (case.path_parameters or {}).items()}


@pytest.fixture
def world(transactional_db, user, team, project, experiment) -> World:
    return World(user=user, team=team, project=project, experiment=experiment)


# The schema /api/openapi.json serves (test_the_fuzzed_schema_is_the_served_one), built when the
# module is collected: schemathesis makes one test per operation from it.
CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": EXAMPLES},
    "checks": {name: {"enabled": False} for name in SKIPPED_CHECKS},
})
schema = schemathesis.openapi.from_dict(api.get_openapi_schema(), config=CONFIG)


def test_the_fuzzed_schema_is_the_served_one(web, transactional_db):
    assert requests.get(f"{web}/api/openapi.json", timeout=10).json() == json.loads(
        json.dumps(api.get_openapi_schema()))


@schema.parametrize()
# The same examples on every run, so that the suite's verdict is repeatable: a new failure is
# found when the API or the schema changes, not by the luck of a draw in CI.
@settings(deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_fail(case, web, world):
    case.path_parameters = world.path_parameters(case)
    case.call_and_validate(base_url=web, headers=world.headers)
