"""API tokens: created and shown once, stored as a SHA-256 only, accepted while active and only
when whole; the page that lists and revokes a user's own tokens; the API's docs."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from webapp.api.models import ApiToken
from webapp.api.tokens import LAST_USED_RESOLUTION, token_create, token_revoke, token_user

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"rlab_[0-9a-f]+_[A-Za-z0-9_-]+")
PAGE = reverse("api_tokens:list")


def create_on_page(client, name: str = "laptop", **headers) -> tuple[str, ApiToken]:
    response = client.post(PAGE, {"name": name}, **headers)
    assert response.status_code == 200
    token = TOKEN.search(response.content.decode()).group()
    return token, ApiToken.objects.get(name=name)


def test_a_new_token_is_shown_once_and_only_its_sha256_is_stored(signed_in, user):
    response = signed_in.post(PAGE, {"name": "laptop"})
    body = response.content.decode()
    token = TOKEN.search(body).group()
    assert "it will not be shown again" in body
    assert f'curl -H "Authorization: Bearer {token}" http://testserver/api/projects' in body

    row = ApiToken.objects.get(user=user)
    assert row.name == "laptop"
    assert token.startswith(f"rlab_{row.prefix}_")
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    secret = token.rsplit("_", 1)[1]
    stored = " ".join(str(value) for value in ApiToken.objects.filter(pk=row.pk).values().get()
                      .values())
    assert secret not in stored

    again = signed_in.get(PAGE).content.decode()
    assert token not in again
    assert f"rlab_{row.prefix}_…" in again


def test_the_page_that_shows_a_token_may_not_be_cached(signed_in):
    response = signed_in.post(PAGE, {"name": "laptop"})
    assert "no-store" in response["Cache-Control"]


def test_htmx_gets_the_tokens_fragment_with_the_new_token(signed_in):
    token, _ = create_on_page(signed_in, HTTP_HX_REQUEST="true")
    response = signed_in.post(PAGE, {"name": "second"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<div class="columns" id="api-tokens">')
    assert "<html" not in body
    assert token not in body  # the first token is never shown again


def test_creating_a_token_needs_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(PAGE, {"name": "laptop"}).status_code == 403
    assert not ApiToken.objects.exists()


def test_a_token_needs_a_name(signed_in):
    response = signed_in.post(PAGE, {"name": "  "})
    assert response.status_code == 422
    assert "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_token_user_accepts_the_whole_token(user):
    _, token = token_create(user=user, name="ci")
    assert token_user(token) == user


def test_token_user_refuses_a_tampered_secret(user):
    _, token = token_create(user=user, name="ci")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert token_user(tampered) is None


def test_token_user_refuses_an_unknown_prefix(user):
    _, token = token_create(user=user, name="ci")
    _, prefix, secret = token.split("_", 2)
    unknown = "0" * len(prefix) if prefix != "0" * len(prefix) else "1" * len(prefix)
    assert token_user(f"rlab_{unknown}_{secret}") is None


@pytest.mark.parametrize("malformed", [
    "", " ", "rlab", "rlab_", "rlab__", "Bearer", "rlab_only-a-prefix", "_rlab_x_y",
])
def test_token_user_refuses_malformed_strings(user, malformed):
    token_create(user=user, name="ci")
    assert token_user(malformed) is None


def test_token_user_refuses_the_token_under_another_scheme(user):
    _, token = token_create(user=user, name="ci")
    assert token_user("xlab" + token[4:]) is None


def test_a_revoked_token_is_refused(user):
    row, token = token_create(user=user, name="ci")
    token_revoke(token=row)
    assert token_user(token) is None


def test_an_inactive_users_token_is_refused(user):
    _, token = token_create(user=user, name="ci")
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert token_user(token) is None


def test_last_used_at_is_set_when_the_token_is_used(user):
    row, token = token_create(user=user, name="ci")
    assert row.last_used_at is None
    token_user(token)
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_last_used_at_is_written_at_most_once_per_resolution(user):
    row, token = token_create(user=user, name="ci")
    earlier = timezone.now() - LAST_USED_RESOLUTION / 2
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=earlier)
    token_user(token)
    row.refresh_from_db()
    assert row.last_used_at == earlier

    stale = timezone.now() - LAST_USED_RESOLUTION - timedelta(seconds=1)
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=stale)
    token_user(token)
    row.refresh_from_db()
    assert row.last_used_at > stale


def test_the_page_lists_only_the_users_own_tokens(signed_in, user, other_user):
    mine, _ = token_create(user=user, name="my laptop")
    theirs, _ = token_create(user=other_user, name="their cluster")
    body = signed_in.get(PAGE).content.decode()
    assert "my laptop" in body and f"rlab_{mine.prefix}_" in body
    assert "their cluster" not in body and f"rlab_{theirs.prefix}_" not in body


def test_revoking_a_token_marks_it_revoked_and_refuses_it(signed_in, user):
    row, token = token_create(user=user, name="ci")
    response = signed_in.post(reverse("api_tokens:revoke", args=[row.pk]))
    assert response.status_code == 302
    assert response["Location"] == PAGE
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert token_user(token) is None
    body = signed_in.get(PAGE).content.decode()
    assert "revoked" in body
    assert reverse("api_tokens:revoke", args=[row.pk]) not in body  # no second revoke button


def test_htmx_revoke_returns_the_tokens_fragment(signed_in, user):
    row, _ = token_create(user=user, name="ci")
    response = signed_in.post(reverse("api_tokens:revoke", args=[row.pk]),
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div class="columns" id="api-tokens">')


def test_revoking_someone_elses_token_is_404(signed_in, other_user):
    row, token = token_create(user=other_user, name="their cluster")
    response = signed_in.post(reverse("api_tokens:revoke", args=[row.pk]))
    assert response.status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None
    assert token_user(token) == other_user


def test_the_api_docs_render_for_a_signed_in_user(signed_in):
    response = signed_in.get(reverse("api:openapi-view"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>rlab API</title>" in body
    assert reverse("api:openapi-json") in body


def test_the_schema_names_the_api_and_its_bearer_authentication(signed_in):
    schema = signed_in.get(reverse("api:openapi-json")).json()
    assert schema["info"]["title"] == "rlab API"
    schemes = schema.get("components", {}).get("securitySchemes", {})
    assert {"type": "http", "scheme": "bearer"} in schemes.values()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_bearer_token_acts_as_its_user(client, user, project):
    _, token = token_create(user=user, name="ci")
    response = client.get("/api/projects", **bearer(token))
    assert response.status_code == 200
    assert [p["name"] for p in response.json()] == [project.name]


def spoiled(user, spoil: str) -> str | None:
    """A token as a script may hold one that does not work: mistyped, revoked, not a token at
    all (with a NUL, even), or none."""
    row, token = token_create(user=user, name="ci")
    if spoil == "tamper":
        return token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    if spoil == "revoke":
        token_revoke(token=row)
        return token
    return {"garbage": "not-a-token", "nul": f"rlab_{row.prefix}\x00_x", "missing": None}[spoil]


SPOILS = ["tamper", "revoke", "garbage", "nul", "missing"]
# A read and a write of each family; a script's client enforces no CSRF, and sends no CSRF token.
CALLS = [
    ("get", "/api/projects/{project}", None),
    ("post", "/api/projects/{project}/experiments", {"name": "from a script"}),
    ("get", "/mlflow/{project}/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": "x"}),
    ("post", "/mlflow/{project}/api/2.0/mlflow/experiments/create", {"name": "from a script"}),
]


@pytest.mark.parametrize("spoil", SPOILS)
@pytest.mark.parametrize(("method", "path", "body"), CALLS,
                         ids=[f"{method}-{path.split('/')[1]}" for method, path, _ in CALLS])
def test_a_missing_or_unusable_token_is_401_invalid_or_revoked_token(user, project, spoil,
                                                                      method, path, body):
    token = spoiled(user, spoil)
    client = Client(enforce_csrf_checks=True,
                    headers={"Authorization": f"Bearer {token}"} if token else {})
    url = path.format(project=project.pk)
    if method == "get":
        response = client.get(url, body)
    else:
        response = client.post(url, json.dumps(body), content_type="application/json")

    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith("Bearer")
    message = response.json().get("detail") or response.json()["message"]
    assert "invalid or revoked token" in message
    assert not project.experiments.exists()


def test_a_signed_in_browser_that_sends_a_bad_token_is_judged_by_the_token(user, project):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.get(f"/api/projects/{project.pk}",
                           headers={"Authorization": "Bearer rlab_0123_nope"})

    assert response.status_code == 401
