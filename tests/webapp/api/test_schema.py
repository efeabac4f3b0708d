"""The API's OpenAPI schema: every endpoint documented, its bodies inline, its enums rlab's."""

from __future__ import annotations

import json

import pytest

from webapp.runs.models import RunStatus

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_documents_every_endpoint(client):
    schema = client.get("/api/openapi.json").json()
    operations = {(method.upper(), path): op for path, methods in schema["paths"].items()
                  for method, op in methods.items()}
    assert set(operations) == {
        ("GET", "/api/projects"), ("GET", "/api/projects/{project_id}"),
        ("GET", "/api/projects/{project_id}/experiments"),
        ("POST", "/api/projects/{project_id}/experiments"),
        ("GET", "/api/experiments/{experiment_id}"),
        ("POST", "/api/experiments/{experiment_id}/runs"),
        ("GET", "/api/runs"), ("GET", "/api/runs/{run_id}"),
        ("POST", "/api/runs/{run_id}/cancel"), ("GET", "/api/runs/{run_id}/checkpoints"),
        ("POST", "/api/runs/{run_id}/metrics"), ("GET", "/api/runs/{run_id}/metrics"),
        ("POST", "/api/runs/{run_id}/rollouts"), ("GET", "/api/runs/{run_id}/rollouts"),
        ("POST", "/api/runs/{run_id}/rollouts/import"),
        ("POST", "/api/projects/{project_id}/tracked-runs"),
        ("POST", "/api/runs/{run_id}/params"), ("POST", "/api/runs/{run_id}/finish"),
        ("POST", "/api/runs/{run_id}/heartbeat"), ("POST", "/api/runs/{run_id}/resume"),
        ("GET", "/api/runs/{run_id}/logs"), ("DELETE", "/api/runs/{run_id}"),
        ("DELETE", "/api/experiments/{experiment_id}"), ("DELETE", "/api/projects/{project_id}"),
        ("GET", "/api/queue"), ("POST", "/api/runs/{run_id}/priority"),
        ("POST", "/api/projects/{project_id}/sweeps"), ("GET", "/api/sweeps/{sweep_id}"),
        ("POST", "/api/sweeps/{sweep_id}/cancel"), ("GET", "/api/job-templates"),
        ("GET", "/api/job-templates/{template_id}"),
        ("POST", "/api/job-templates/{template_id}/launch")}
    assert all(op.get("summary") and op.get("security") for op in operations.values())
    metrics_body = operations[("POST", "/api/runs/{run_id}/metrics")]["requestBody"]
    properties = metrics_body["content"]["application/json"]["schema"]["properties"]
    assert properties["points"]["items"]["required"] == ["key", "step", "value"]
    assert "$ref" not in json.dumps(metrics_body)
    referenced = {ref.rsplit("/", 1)[1] for ref in _refs(schema)}
    assert referenced <= set(schema["components"]["schemas"])


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_status_values_are_the_run_statuses(client):
    schema = client.get("/api/openapi.json").json()
    assert schema["components"]["schemas"]["RunStatus"]["enum"] == list(RunStatus.values)


def test_no_two_schemas_share_a_name():
    """The OpenAPI document names a schema by its class's name: a second class of one name
    would silently replace the first's description (a sweep's progress once replaced a run's)."""
    from ninja import Schema

    from webapp.api.api import api  # noqa: F401 (imports every router's schemas)

    def every(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from every(sub)

    ours = [cls for cls in every(Schema) if cls.__module__.startswith("webapp.")]
    names = [cls.__name__ for cls in ours]
    assert sorted({name for name in names if names.count(name) > 1}) == []
