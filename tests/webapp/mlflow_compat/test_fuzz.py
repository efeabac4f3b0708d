"""Schemathesis fuzzes the MLflow-compatible endpoints, against the ASGI server as production runs
it with a real token. MLflow publishes no OpenAPI schema, so the one below describes the subset
rlab answers: its paths and methods, the request bodies as webapp.mlflow_compat.bodies reads
them (the schema of each body model), and MLflow's error JSON. Bodies and parameters that fit it
and many that do not: no request may answer a 5xx (the MLflow client retries those for minutes),
and every refusal must be MLflow's error JSON with a status the description lists.

A `run_id` or `experiment_id` drawn as text is replaced by a real one, so that bodies reach the
services; a run that a request ended is replaced by a new one."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from webapp.common.inputs import text_problem
from webapp.mlflow_compat import bodies
from webapp.mlflow_compat.errors import STATUS_OF_CODE
from webapp.runs.models import Run
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

# Per call and generation mode, besides the coverage phase's boundary cases: about 1,000
# requests, a minute on two busy cores.
EXAMPLES = 30
# A 2xx for every request the description allows, and a 4xx for every one it does not, would
# hold MLflow to a strictness it does not have: a run that has ended is a 409, and protobuf's JSON
# takes an int64 as a string, a string field's number as its text, and ignores unknown fields.
SKIPPED_CHECKS = ["positive_data_acceptance", "negative_data_rejection"]

# (method, path under api/2.0/mlflow/, body model)
CALLS = [
    ("get", "experiments/get-by-name", bodies.ExperimentByName),
    ("get", "experiments/get", bodies.ExperimentById),
    ("post", "experiments/create", bodies.ExperimentCreate),
    ("post", "runs/create", bodies.RunCreate),
    ("get", "runs/get", bodies.RunBody),
    ("post", "runs/update", bodies.RunUpdate),
    ("post", "runs/log-metric", bodies.LogMetric),
    ("post", "runs/log-parameter", bodies.LogPair),
    ("post", "runs/set-tag", bodies.LogPair),
    ("post", "runs/log-batch", bodies.LogBatch),
    ("post", "runs/log-inputs", bodies.LogInputs),
]
ERROR = {"type": "object", "required": ["error_code", "message"], "properties": {
    "error_code": {"enum": sorted(STATUS_OF_CODE)}, "message": {"type": "string"}}}
REFUSALS = {str(status): {"description": "MLflow's error JSON",
                          "content": {"application/json": {"schema": ERROR}}}
            for status in (400, 401, 403, 404, 409)}


def description() -> dict:
    """An OpenAPI 3.1 description of the calls rlab answers."""
    components: dict = {}
    paths = {}
    for method, path, model in CALLS:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        operation: dict = {
            "operationId": f"{method}-{path}",
            "responses": {"200": {"description": "done", "content": {
                "application/json": {"schema": {"type": "object"}}}}, **REFUSALS},
        }
        if method == "get":
            required = set(body.get("required", []))
            operation["parameters"] = [
                {"in": "query", "name": name, "required": name in required,
                 "schema": {"type": "string"}} for name in body["properties"]]
        else:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": body}}}
        paths[f"/api/2.0/mlflow/{path}"] = {method: operation}
    return {"openapi": "3.1.0", "info": {"title": "rlab's MLflow tracking", "version": "2.0"},
            "paths": paths, "security": [{"token": []}],
            "components": {"schemas": components,
                           "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}}}


CONFIG = schemathesis.Config.from_dict({
    "generation": {"max-examples": EXAMPLES},
    "checks": {name: {"enabled": False} for name in SKIPPED_CHECKS},
})
schema = schemathesis.openapi.from_dict(description(), config=CONFIG)


class Tracking:
    """The project the fuzzed calls log into, as its admin, and its running tracked run."""

    def __init__(self, *, user, project, token: str):
        self.user = user
        self.experiment = tracked_experiment_get_or_create(project=project, user=user,
                                                           name="sweep")
        self.run = self._new_run()
        self.headers = {"Authorization": f"Bearer {token}"}

    def _new_run(self) -> Run:
        return tracked_run_create(experiment=self.experiment, user=self.user)

    def fill(self, case) -> None:
        """Real ids in place of storable text drawn for them; anything else stays, to be
        refused."""
        self.run.refresh_from_db()
        if self.run.is_terminal:
            self.run = self._new_run()
        real = {"run_id": str(self.run.pk), "experiment_id": str(self.experiment.pk)}
        for values in (case.body, case.query):
            if isinstance(values, dict):
                for name, value in real.items():
                    drawn = values.get(name)
                    if isinstance(drawn, str) and text_problem(drawn) is None:
                        values[name] = value


@pytest.fixture
def logging_into(tracking, user, project, token) -> Tracking:
    return Tracking(user=user, project=project, token=token)


@schema.parametrize()
# The same examples on every run, so that the suite's verdict is repeatable: a new failure is
# found when the API or the schema changes, not by the luck of a draw in CI.
@settings(deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_tracking_call_makes_the_server_fail(case, tracking, logging_into):
    logging_into.fill(case)
    case.call_and_validate(base_url=tracking(), headers=logging_into.headers)
