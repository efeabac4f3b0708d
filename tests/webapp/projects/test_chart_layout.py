"""A project's chart layout: saved strictly by members, and every run and comparison page of the
project renders its panels in that layout."""

from __future__ import annotations

import doctest
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.projects import selectors as project_selectors, services as project_services
from webapp.projects.models import Project
from webapp.runs import ingestion, services

pytestmark = pytest.mark.django_db

LAYOUT = {"panels": [{"key": "loss/policy", "pinned": False, "size": "2x1", "hidden": False},
                     {"key": "z/last", "pinned": True, "size": "1x2", "hidden": False},
                     {"key": "a/first", "pinned": False, "size": "1x1", "hidden": False},
                     {"key": "m/middle", "pinned": False, "size": "1x1", "hidden": True}]}


def post_layout(client, project, body, **extra):
    return client.post(reverse("projects:chart_layout", args=[project.pk]),
                       data=body if isinstance(body, (str, bytes)) else json.dumps(body),
                       content_type="application/json", **extra)


def stored(project) -> dict:
    return Project.objects.get(pk=project.pk).chart_layout


def logged(run, *keys: str):
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=1, value=0.5, wall_time=timezone.now())
        for key in keys])
    return run


def panel_order(body: str) -> list[str]:
    return re.findall(r'<section class="chart-panel[^"]*" data-panel="([^"]*)"', body)


@pytest.fixture
def run(experiment, user):
    return logged(services.run_launch(experiment=experiment, user=user),
                  "a/first", "loss/policy", "reward/mean", "z/last", "m/middle")


def test_doctests_pass():
    assert doctest.testmod(project_selectors).failed == 0
    assert doctest.testmod(project_services).failed == 0


def test_a_member_saves_the_layout_and_gets_it_back_as_stored(signed_in, project):
    response = post_layout(signed_in, project, {"panels": [{"key": "reward/mean",
                                                            "pinned": True}]})
    assert response.status_code == 200
    expected = {"panels": [{"key": "reward/mean", "pinned": True, "size": "1x1",
                            "hidden": False}]}
    assert response.json() == {"layout": expected}
    assert stored(project) == expected


def test_an_empty_list_of_panels_resets_the_layout(signed_in, project):
    post_layout(signed_in, project, LAYOUT)
    assert post_layout(signed_in, project, {"panels": []}).status_code == 200
    assert stored(project) == {"panels": []}


def test_a_form_posts_the_layout_as_text_and_goes_back_to_the_page(signed_in, project):
    response = signed_in.post(reverse("projects:chart_layout", args=[project.pk]),
                              {"layout": json.dumps(LAYOUT), "next": "/runs/1/"})
    assert response.status_code == 302
    assert response["Location"] == "/runs/1/"
    assert stored(project) == LAYOUT


def test_a_form_reset_clears_the_layout_and_never_goes_to_another_site(signed_in, project):
    post_layout(signed_in, project, LAYOUT)
    response = signed_in.post(reverse("projects:chart_layout", args=[project.pk]),
                              {"reset": "1", "next": "https://evil.example/"})
    assert response["Location"] == project.get_absolute_url()
    assert stored(project) == {"panels": []}


@pytest.mark.parametrize(("body", "says"), [
    ("not json", "not JSON"),
    ("[]", "an object"),
    ({"panels": [], "theme": "dark"}, "an object with one field"),
    ({"panels": "reward/mean"}, "must be a list"),
    ({"panels": [{"pinned": True}]}, 'Panel 1 must be an object with a "key"'),
    ({"panels": ["reward/mean"]}, 'Panel 1 must be an object with a "key"'),
    ({"panels": [{"key": "a", "colour": "red"}]}, "unknown fields: colour"),
    ({"panels": [{"key": ""}]}, "1 to 250 characters"),
    ({"panels": [{"key": "k" * 251}]}, "1 to 250 characters"),
    ({"panels": [{"key": 7}]}, "1 to 250 characters"),
    ({"panels": [{"key": "a\x00b"}]}, "NUL"),
    ('{"panels": [{"key": "a\\ud800"}]}', "lone surrogate"),
    ({"panels": [{"key": "a"}, {"key": "a"}]}, "Panel 2: the metric 'a' has a panel already"),
    ({"panels": [{"key": "a", "pinned": "yes"}]}, '"pinned" must be true or false'),
    ({"panels": [{"key": "a", "pinned": 1}]}, '"pinned" must be true or false'),
    ({"panels": [{"key": "a", "hidden": None}]}, '"hidden" must be true or false'),
    ({"panels": [{"key": "a", "size": "4x1"}]}, "the size must be one of 1x1, 2x1"),
    ('{"panels": [{"key": "a", "size": NaN}]}', "the size must be one of"),
    ({"panels": [{"key": f"k{i}"} for i in range(501)]}, "at most 500 panels; this one has 501"),
])
def test_a_bad_layout_is_refused_with_a_message_and_nothing_changes(signed_in, project, body,
                                                                     says):
    post_layout(signed_in, project, LAYOUT)
    response = post_layout(signed_in, project, body)
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert stored(project) == LAYOUT


def test_a_bad_layout_posted_by_a_form_is_a_400_with_the_message(signed_in, project):
    response = signed_in.post(reverse("projects:chart_layout", args=[project.pk]),
                              {"layout": json.dumps({"panels": [{"key": "a", "size": "9x9"}]})})
    assert response.status_code == 400
    assert "the size must be one of" in response.content.decode()


def test_five_hundred_panels_of_the_longest_keys_are_kept(signed_in, project):
    layout = {"panels": [{"key": f"{i:03d}" + "k" * 247, "pinned": i % 2 == 0, "size": "3x2",
                          "hidden": i % 3 == 0} for i in range(500)]}
    assert post_layout(signed_in, project, layout).status_code == 200
    assert stored(project) == layout


def test_a_viewer_cannot_save_the_layout(client, project, member_of):
    client.force_login(member_of("viewer"))
    assert post_layout(client, project, LAYOUT).status_code == 403
    assert stored(project) == {}


def test_an_outsider_gets_404_and_changes_nothing(client, project, other_user):
    client.force_login(other_user)
    assert post_layout(client, project, LAYOUT).status_code == 404
    assert stored(project) == {}


def test_saving_needs_a_signed_in_user_and_a_post(client, signed_in, project):
    url = reverse("projects:chart_layout", args=[project.pk])
    assert signed_in.get(url).status_code == 405
    signed_in.logout()
    assert post_layout(signed_in, project, LAYOUT).status_code == 302
    assert stored(project) == {}


def test_saving_needs_the_csrf_token(project, user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert post_layout(client, project, LAYOUT).status_code == 403
    assert stored(project) == {}


def test_run_page_renders_panels_pinned_first_then_saved_order_then_new_metrics(signed_in,
                                                                                 project, run):
    post_layout(signed_in, project, LAYOUT)
    body = signed_in.get(run.get_absolute_url()).content.decode()
    # headline metrics (each with a panel, recorded or not) lead the default order
    assert panel_order(body) == ["z/last", "loss/policy", "a/first", "m/middle", "reward/mean",
                                 "kl/mean", "entropy/mean", "completion/length_mean"]
    assert 'data-panel="z/last" data-size="1x2"' in body
    assert 'class="chart-panel pinned" data-panel="z/last"' in body
    assert 'data-panel="loss/policy" data-size="2x1"' in body
    assert re.search(r'data-panel="m/middle"[^>]* hidden>', body)
    assert not re.search(r'data-panel="a/first"[^>]* hidden>', body)


def test_run_page_without_a_layout_renders_the_default_order(signed_in, run):
    body = signed_in.get(run.get_absolute_url()).content.decode()
    assert panel_order(body) == ["reward/mean", "kl/mean", "entropy/mean",
                                 "completion/length_mean", "a/first", "loss/policy", "m/middle",
                                 "z/last"]
    assert f'<div class="chart-grid" data-project="{run.experiment.project_id}">' in body


def test_run_page_carries_the_layout_and_whether_the_user_may_change_it(client, signed_in,
                                                                          project, run,
                                                                          member_of):
    post_layout(signed_in, project, LAYOUT)
    found = re.search(rf'<script id="chart-layout-{project.pk}" type="application/json">'
                      r"(.*?)</script>", signed_in.get(run.get_absolute_url()).content.decode())
    config = json.loads(found.group(1))
    assert config == {"layout": LAYOUT, "canEdit": True,
                      "url": reverse("projects:chart_layout", args=[project.pk])}
    client.force_login(member_of("viewer"))
    body = client.get(run.get_absolute_url()).content.decode()
    assert '"canEdit": false' in body
    assert panel_order(body)[:3] == ["z/last", "loss/policy", "a/first"]


def test_compare_page_renders_the_runs_panels_in_the_projects_layout(signed_in, project,
                                                                     experiment, user, run):
    other = logged(services.run_launch(experiment=experiment, user=user), "only/other")
    post_layout(signed_in, project, {"panels": [{"key": "only/other", "pinned": True},
                                                {"key": "m/middle"}]})
    body = signed_in.get(reverse("runs:compare", args=[project.pk]),
                         {"runs": [run.pk, other.pk]}).content.decode()
    assert panel_order(body) == ["only/other", "m/middle", "reward/mean", "a/first",
                                 "loss/policy", "z/last"]


def test_compare_result_swapped_by_htmx_carries_its_grid_and_layout(signed_in, project,
                                                                   experiment, user, run):
    other = logged(services.run_launch(experiment=experiment, user=user), "only/other")
    body = signed_in.get(reverse("runs:compare", args=[project.pk]),
                         {"runs": [run.pk, other.pk]}, HTTP_HX_REQUEST="true").content.decode()
    assert f'id="chart-layout-{project.pk}"' in body
    assert "only/other" in panel_order(body)


def test_metric_keys_with_markup_are_escaped_in_panels_and_layout(signed_in, project,
                                                                  experiment, user):
    payload = "x<script>alert(1)</script>\"'"
    run = logged(services.run_launch(experiment=experiment, user=user), payload)
    post_layout(signed_in, project, {"panels": [{"key": payload, "pinned": True}]})
    body = signed_in.get(run.get_absolute_url()).content.decode()
    assert "<script>alert(1)" not in body
    assert panel_order(body)[0] == "x&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;"


def test_chart_layout_tag_gives_a_page_of_its_own_grid_the_layout(project, user, member_of):
    from django.template import Context, Template

    Project.objects.filter(pk=project.pk).update(chart_layout=LAYOUT)
    project.refresh_from_db()
    template = Template("{% load dashboard %}{% chart_layout project %}")
    for who, can_edit in ((user, True), (member_of("viewer"), False)):
        html = template.render(Context({"project": project, "user": who}))
        found = re.fullmatch(rf'<script id="chart-layout-{project.pk}" '
                             r'type="application/json">(.*)</script>', html)
        assert json.loads(found.group(1))["layout"] == LAYOUT
        assert json.loads(found.group(1))["canEdit"] is can_edit
