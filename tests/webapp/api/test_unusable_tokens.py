"""A script whose token does not work (mistyped, revoked) is told so on every endpoint, read or
write, REST or MLflow: 401 with "invalid or revoked token", never a CSRF refusal meant for a
browser, and nothing is written. The endpoints come from the OpenAPI schema and the MLflow URL
patterns, so a new one is covered as soon as it exists; they are called over HTTP on the real
web server, as a script calls them."""

from __future__ import annotations

import re

import pytest
import requests
from django.urls import URLPattern

from tests.stack import start_web
from webapp.api.api import api
from webapp.api.tokens import token_create, token_revoke
from webapp.mlflow_compat import urls as mlflow_urls

SPOILS = ("mistyped", "revoked")


def rest_operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return sorted((method, path) for path, methods in schema["paths"].items()
                  for method in methods)


def mlflow_paths() -> list[str]:
    """Every MLflow path, a sample value in each of its parameters (a regular expression's
    pattern, the catch-all, as one of the calls it answers)."""
    paths = set()
    for pattern in mlflow_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern)
        if "(?P<" in route:
            route = f"{mlflow_urls.PREFIX}runs/search"
        route = re.sub(r"<int:\w+>", "1", route)
        route = re.sub(r"<(?:\w+:)?\w+>", "sample.txt", route)
        if route:  # "" is the tracking URI's page, for browsers (tests/browser)
            paths.add(f"/mlflow/{{project_id}}/{route}")
    return sorted(paths)


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


@pytest.fixture
def unusable(transactional_db, user, experiment):
    """The team's ids, and a token of the team's admin spoilt each way."""
    from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

    script = tracked_experiment_get_or_create(project=experiment.project, user=user,
                                              name="script")
    run = tracked_run_create(experiment=script, user=user, name="by a script")
    # The token is refused before any lookup: no sweep or template is needed to show it (id 0).
    ids = {"project_id": experiment.project.pk, "experiment_id": experiment.pk,
           "run_id": run.pk, "sweep_id": 0, "template_id": 0}
    row, token = token_create(user=user, name="ci")
    second, revoked = token_create(user=user, name="old")
    token_revoke(token=second)
    return ids, {"mistyped": token[:-2] + ("xy" if not token.endswith("xy") else "yz"),
                 "revoked": revoked}


def call(base_url: str, method: str, path: str, ids: dict, token: str) -> requests.Response:
    url = base_url + path.format(**ids)
    headers = {"Authorization": f"Bearer {token}"}
    if method in ("get", "delete"):
        return requests.request(method, url, headers=headers, timeout=30)
    return requests.request(method, url, data=b"{}", timeout=30,
                            headers={**headers, "Content-Type": "application/json"})


def assert_refused(response: requests.Response, what: str) -> None:
    assert response.status_code == 401, f"{what}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert "invalid or revoked token" in (body.get("detail") or body.get("message")), what


@pytest.mark.parametrize("spoil", SPOILS)
def test_every_rest_endpoint_refuses_an_unusable_token_with_401(web, unusable, spoil):
    ids, tokens = unusable
    counts = run_counts()
    for method, path in rest_operations():
        response = call(web, method, path, ids, tokens[spoil])
        assert_refused(response, f"{method.upper()} {path}")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert run_counts() == counts


@pytest.mark.parametrize("spoil", SPOILS)
def test_every_mlflow_endpoint_refuses_an_unusable_token_with_401(web, unusable, spoil):
    ids, tokens = unusable
    counts = run_counts()
    for path in mlflow_paths():
        response = call(web, "post", path, ids, tokens[spoil])
        if response.status_code == 405:  # the method is checked first: call it as it is called
            response = call(web, response.headers["Allow"].lower(), path, ids, tokens[spoil])
        assert_refused(response, path)
        assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert run_counts() == counts


def run_counts() -> tuple[int, ...]:
    from webapp.experiments.models import Experiment
    from webapp.runs.models import Run

    return Experiment.objects.count(), Run.objects.count(), Run.objects.filter(
        status="cancelled").count()


def test_a_page_sent_an_unusable_rlab_token_says_so_instead_of_refusing_csrf(web, unusable):
    ids, tokens = unusable
    response = call(web, "post", "/runs/{run_id}/cancel/", ids, tokens["revoked"])
    assert_refused(response, "a page's form")
    assert run_counts()[2] == 0


def test_the_mlflow_clients_basic_auth_with_a_revoked_token_is_refused(web, unusable):
    ids, tokens = unusable
    response = requests.post(
        f"{web}/mlflow/{ids['project_id']}/api/2.0/mlflow/runs/search", json={}, timeout=30,
        auth=("ada", tokens["revoked"]))
    assert_refused(response, "basic auth")


def test_the_credentials_of_a_proxy_in_front_of_the_pages_pass(web, unusable):
    """A proxy that asks for a password, or passes its own bearer token on, sends them with
    every page: they are not rlab's to judge."""
    ids, _ = unusable
    for headers in ({"Authorization": "Basic YWRhOnByb3h5LXBhc3N3b3Jk"},
                    {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"}):
        for path in ("/login/", f"/mlflow/{ids['project_id']}/"):
            response = requests.get(web + path, headers=headers, timeout=30,
                                    allow_redirects=False)
            assert response.status_code in (200, 302), (path, headers, response.status_code)
