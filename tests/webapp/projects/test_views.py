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


def test_create_project(signed_in):
    response = signed_in.post(reverse("projects:list"), {"name": "Sums", "description": ""})
    project = Project.objects.get()
    assert response.status_code == 302
    assert response["Location"] == project.get_absolute_url()


def test_blank_project_name_is_an_error(signed_in):
    response = signed_in.post(reverse("projects:list"), {"name": " ", "description": ""},
                              HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "This field is required" in response.content.decode()
    assert not Project.objects.exists()


def test_project_page_lists_its_experiments(signed_in, experiment):
    response = signed_in.get(reverse("projects:detail", args=[experiment.project.pk]))
    assert experiment.name in response.content.decode()
