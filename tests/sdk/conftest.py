"""The SDK's and the command line's tests run against a real web server (uvicorn, as served)
on the test database."""

from __future__ import annotations

import pytest

from rlab.cli import main
from tests.stack import start_web
from webapp.api.tokens import token_create


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    """One web server for the module: each test's rows are committed, so it sees them."""
    web, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    web.stop()


@pytest.fixture
def rlab(server, user, monkeypatch, capsys):
    """rlab("runs", "--limit", "5") -> (exit status, stdout, stderr), the command line run in
    this process against the server, as the team's admin."""
    monkeypatch.setenv("RLAB_URL", server)
    monkeypatch.setenv("RLAB_TOKEN", token_create(user=user, name="cli")[1])

    def call(*argv: str) -> tuple[int, str, str]:
        status = main([str(arg) for arg in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return call
