"""The project's settings page: its concurrency limit, for admins of its team."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def url(project) -> str:
    return reverse("projects:settings", args=[project.pk])


def test_an_admin_sets_and_clears_the_limit(signed_in, project):
    response = signed_in.post(url(project), {"max_concurrent_runs": "3"}, follow=True)
    assert "At most 3 runs at once." in response.content.decode()
    project.refresh_from_db()
    assert project.max_concurrent_runs == 3
    signed_in.post(url(project), {"max_concurrent_runs": ""})
    project.refresh_from_db()
    assert project.max_concurrent_runs is None


@pytest.mark.parametrize("value, message", [
    ("0", "greater than or equal to 1"), ("1001", "less than or equal to 1000"),
    ("two", "Enter a whole number."), ("1\x00", "Enter a whole number.")])
def test_a_bad_limit_is_refused_next_to_the_field(signed_in, project, value, message):
    response = signed_in.post(url(project), {"max_concurrent_runs": value})
    assert response.status_code == 422
    assert message in response.content.decode()
    project.refresh_from_db()
    assert project.max_concurrent_runs is None


def test_a_member_gets_403_and_an_outsider_404(client, project, member_of, other_user):
    client.force_login(member_of("member"))
    assert client.get(url(project)).status_code == 403
    assert client.post(url(project), {"max_concurrent_runs": "1"}).status_code == 403
    client.force_login(other_user)
    assert client.get(url(project)).status_code == 404
    project.refresh_from_db()
    assert project.max_concurrent_runs is None


def test_the_project_page_links_to_its_settings_for_admins_only(client, signed_in, project,
                                                                member_of):
    assert url(project) in signed_in.get(project.get_absolute_url()).content.decode()
    client.force_login(member_of("member"))
    assert url(project) not in client.get(project.get_absolute_url()).content.decode()
