import pytest
from django.urls import reverse

from webapp.projects.models import Project

pytestmark = pytest.mark.django_db


def test_project_list_requires_login(client):
    response = client.get(reverse("projects:list"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_login_page_signs_in(client, user):
    response = client.post(reverse("login"), {"username": "ada", "password": "lovelace-1843"})
    assert response.status_code == 302
    assert client.get(reverse("projects:list")).status_code == 200


def test_wrong_password_shows_an_error(client, user):
    response = client.post(reverse("login"), {"username": "ada", "password": "nope"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()


def test_create_project(signed_in, team):
    response = signed_in.post(reverse("projects:list"),
                              {"team": team.pk, "name": "Sums", "description": ""})
    project = Project.objects.get()
    assert response.status_code == 302
    assert response["Location"] == project.get_absolute_url()


def test_blank_project_name_is_an_error(signed_in, team):
    response = signed_in.post(reverse("projects:list"),
                              {"team": team.pk, "name": " ", "description": ""},
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "This field is required" in response.content.decode()
    assert not Project.objects.exists()


def test_project_page_lists_its_experiments(signed_in, experiment):
    response = signed_in.get(reverse("projects:detail", args=[experiment.project.pk]))
    assert experiment.name in response.content.decode()


def test_project_list_shows_only_the_users_teams_projects(signed_in, project, other_user):
    from webapp.projects.services import project_create
    from webapp.teams.services import team_create

    elsewhere = team_create(name="Elsewhere", user=other_user)
    project_create(team=elsewhere, name="Secret plans", description="", user=other_user)
    body = signed_in.get(reverse("projects:list")).content.decode()
    assert project.name in body
    assert "Secret plans" not in body


def test_a_viewer_cannot_create_a_project_in_the_team(client, team, member_of):
    client.force_login(member_of("viewer"))
    response = client.post(reverse("projects:list"),
                           {"team": team.pk, "name": "Mine", "description": ""})
    assert response.status_code == 422
    assert "team" in response.context["form"].errors
    assert not Project.objects.exists()


def test_without_a_team_the_page_says_how_to_get_one(client, other_user):
    client.force_login(other_user)
    body = client.get(reverse("projects:list")).content.decode()
    assert "Create a team" in body
