"""The runs table's columns: ids that parse (or say why not), and the set each user keeps per
project through the column picker."""

from __future__ import annotations

import doctest

import pytest
from django.urls import reverse

from webapp.runs_table import columns
from webapp.runs_table.columns import ColumnError, parse_column, parse_columns
from webapp.runs_table.models import ColumnSet

pytestmark = pytest.mark.django_db


def picker(project) -> str:
    return reverse("runs_table:columns", args=[project.pk])


def table(project, query: str = "") -> str:
    return reverse("runs_table:table", args=[project.pk]) + (f"?{query}" if query else "")


def test_doctests_pass():
    assert doctest.testmod(columns).failed == 0


@pytest.mark.parametrize("text", ["metric:mean:0:loss", "metric:mean:101:loss", "metric:avg:loss",
                                  "metric:last:", "config:", "score:loss", "metric:mean:x:loss"])
def test_a_column_id_that_names_no_column_says_why(text):
    with pytest.raises(ColumnError):
        parse_column(text)


def test_a_column_is_kept_once_and_at_most_twenty():
    assert len(parse_columns(["config:lr", "config:lr"])) == 1
    with pytest.raises(ColumnError, match="At most 20"):
        parse_columns([f"config:k{i}" for i in range(21)])


def test_picked_columns_are_kept_for_the_user_and_project(signed_in, project, user):
    signed_in.post(picker(project), {"add_metric": "reward/mean", "add_aggregate": "max"})
    signed_in.post(picker(project), {"columns": ["metric:max:reward/mean"],
                                     "add_metric": "loss", "add_aggregate": "mean", "add_k": 5})
    signed_in.post(picker(project), {"columns": ["metric:max:reward/mean", "metric:mean:5:loss"],
                                     "add_config": "learning_rate"})
    kept = ColumnSet.objects.get(user=user, project=project).columns
    assert kept == ["metric:max:reward/mean", "metric:mean:5:loss", "config:learning_rate"]
    body = signed_in.get(table(project)).content.decode()
    assert "reward/mean (max)" in body and "loss (mean of last 5)" in body


def test_unticking_a_column_removes_it(signed_in, project, user):
    ColumnSet.objects.create(user=user, project=project, columns=["config:seed", "config:lr"])
    signed_in.post(picker(project), {"columns": ["config:lr"]})
    assert ColumnSet.objects.get(user=user, project=project).columns == ["config:lr"]


def test_another_users_columns_and_another_projects_are_their_own(
        client, signed_in, project, user, member_of, team):
    from webapp.projects.services import project_create

    second = project_create(team=team, name="Other", description="", user=user)
    signed_in.post(picker(project), {"add_config": "seed"})
    signed_in.post(picker(second), {"add_config": "beta"})
    viewer = member_of("viewer")
    client.force_login(viewer)
    client.post(picker(project), {"add_config": "max_steps"})
    assert ColumnSet.objects.get(user=user, project=project).columns == ["config:seed"]
    assert ColumnSet.objects.get(user=user, project=second).columns == ["config:beta"]
    assert ColumnSet.objects.get(user=viewer, project=project).columns == ["config:max_steps"]
    body = client.get(table(project)).content.decode()
    assert ">max_steps<" in body and ">seed<" not in body


def test_a_bad_k_is_refused_with_a_message_and_nothing_is_kept(signed_in, project, user):
    response = signed_in.post(picker(project), {"add_metric": "loss", "add_aggregate": "mean",
                                                "add_k": 500})
    assert response.status_code == 422
    assert "less than or equal to 100" in response.content.decode()
    assert not ColumnSet.objects.filter(user=user).exists()


def test_a_saved_column_that_no_longer_parses_is_left_out(signed_in, project, user):
    ColumnSet.objects.create(user=user, project=project, columns=["metric:avg:x", "config:seed",
                                                                  7])
    body = signed_in.get(table(project)).content.decode()
    assert signed_in.get(table(project)).status_code == 200 and ">seed<" in body


def test_the_picker_offers_the_projects_settings_and_metrics(signed_in, project, lab):
    body = signed_in.get(picker(project)).content.decode()
    assert '<option value="learning_rate">' in body
    assert '<option value="reward/mean">' in body


def test_saving_returns_to_the_same_view_of_the_table(signed_in, project):
    response = signed_in.post(picker(project), {"add_config": "seed",
                                                "back": "sort=status&order=asc"})
    assert response.url == table(project, "sort=status&order=asc")


def test_back_never_leads_elsewhere(signed_in, project):
    response = signed_in.post(picker(project), {"add_config": "seed",
                                                "back": "https://evil.example/x"})
    assert response.url.startswith(table(project))


def test_an_outsider_gets_404_from_the_picker(client, project, other_user):
    client.force_login(other_user)
    assert client.get(picker(project)).status_code == 404
    assert client.post(picker(project), {"add_config": "seed"}).status_code == 404
