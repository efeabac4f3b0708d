"""The real mlflow client, in the test process, logging over HTTP into the web app: the ASGI
server as production runs it, a separate process on the test database (tests/stack.py)."""

from __future__ import annotations

import contextlib

import pytest

from tests.stack import start_web
from webapp.api.tokens import token_create


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    """One server for a module's tests. It stops before the test database is dropped, which
    its connections would otherwise hold open."""
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


@pytest.fixture
def token(user) -> str:
    return token_create(user=user, name="mlflow")[1]


@pytest.fixture
def tracking(web, transactional_db, project, token, monkeypatch):
    """Point the mlflow client at `project` with the admin's token, as a script's environment
    does; returns a function that points it elsewhere (another project or token)."""
    import mlflow
    from mlflow.tracking import fluent

    def point(*, project_id: int = project.pk, token: str | None = token) -> str:
        uri = f"{web}/mlflow/{project_id}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        if token is None:
            monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        else:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        return uri

    # A refused call fails at once rather than after minutes of retries. mlflow.set_experiment
    # remembers its experiment in the process and in MLFLOW_EXPERIMENT_ID, which must not leak
    # into the next test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    point()
    yield point
    while mlflow.active_run() is not None:
        with contextlib.suppress(Exception):
            mlflow.end_run()
