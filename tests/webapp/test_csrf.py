"""Every unsafe endpoint refuses a request without the CSRF token, and htmx's header passes."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.webapp.test_permissions import MATRIX, sweep_of, world  # noqa: F401  (world is a fixture)

pytestmark = pytest.mark.django_db

UNSAFE = sorted(name for name, (method, *_rest) in MATRIX.items() if method == "post")


@pytest.mark.parametrize("name", UNSAFE)
def test_a_post_without_the_csrf_token_is_refused(world, name):
    users, ids = world
    _, kwarg_names, data, _ = MATRIX[name]
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    if "sweep_id" in kwarg_names:
        ids = {**ids, "sweep_id": sweep_of(users["admin"], ids["project_id"])}
    url = reverse(name, kwargs={k: ids[k] for k in kwarg_names})
    assert client.post(url, data).status_code == 403


def test_htmx_sends_the_token_in_a_header(world):
    users, ids = world
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    page = client.get(reverse("runs:detail", args=[ids["run_id"]]))
    token = page.context["csrf_token"]
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in page.content.decode()
    response = client.post(reverse("reviews:star", args=[ids["run_id"]]),
                           HTTP_X_CSRFTOKEN=str(token), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
