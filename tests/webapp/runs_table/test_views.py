"""The runs table page: who sees it, each filter, the search box's two modes, the columns'
values, the actions on ticked runs (and who may take them), groups, and names that carry
markup."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from webapp.reviews.models import RunTag
from webapp.runs.models import Run, RunStatus
from webapp.runs_table.models import ColumnSet
from webapp.sweeps.models import Sweep

from .conftest import log

pytestmark = pytest.mark.django_db


def table(project, query: str = "") -> str:
    return reverse("runs_table:table", args=[project.pk]) + (f"?{query}" if query else "")


def act(project) -> str:
    return reverse("runs_table:act", args=[project.pk])


def shown_runs(client, project, query: str = "") -> list[int]:
    response = client.get(table(project, query))
    assert response.status_code == 200, response.content.decode()[-2000:]
    return [int(pk) for pk in re.findall(r'data-run="(\d+)"', response.content.decode())]


def ids(*runs) -> list[int]:
    return sorted(run.pk for run in runs)


def test_an_outsider_gets_404(client, project, other_user):
    client.force_login(other_user)
    assert client.get(table(project)).status_code == 404
    assert client.post(act(project), {"action": "compare", "runs": [1]}).status_code == 404


def test_signed_out_goes_to_sign_in(client, project):
    assert client.get(table(project)).status_code == 302


def test_every_run_of_every_experiment_newest_first(signed_in, project, lab):
    every = [*lab["small"], *lab["large"], lab["queued"]]
    assert shown_runs(signed_in, project) == sorted((r.pk for r in every), reverse=True)


def test_the_project_page_and_list_link_to_the_table(signed_in, project):
    href = f'href="{table(project)}"'
    assert href in signed_in.get(project.get_absolute_url()).content.decode()
    assert href in signed_in.get(reverse("projects:list")).content.decode()


def test_filter_by_status(signed_in, project, lab):
    assert sorted(shown_runs(signed_in, project, "status=queued")) == ids(lab["queued"])
    both = shown_runs(signed_in, project, "status=queued&status=succeeded")
    assert len(both) == 6


def test_filter_by_tag(signed_in, project, lab):
    assert sorted(shown_runs(signed_in, project, "tag=good")) == ids(*lab["large"])


def test_filter_by_author(signed_in, project, lab, member_of, experiment):
    from webapp.runs import services

    other = member_of("member", "grace")
    theirs = services.run_launch(experiment=experiment, user=other)
    assert shown_runs(signed_in, project, "author=grace") == [theirs.pk]


def test_filter_by_experiment(signed_in, project, lab):
    query = f"experiment={lab['other'].pk}"
    assert sorted(shown_runs(signed_in, project, query)) == ids(*lab["large"])


def test_another_projects_experiment_is_no_choice(signed_in, project, lab, team, user):
    from webapp.projects.services import project_create

    elsewhere = project_create(team=team, name="Elsewhere", description="", user=user)
    experiment = elsewhere.experiments.create(name="x", config={}, author=user)
    response = signed_in.get(table(project, f"experiment={experiment.pk}"))
    assert response.status_code == 422
    assert "Select a valid choice" in response.content.decode()


def test_filter_by_sweep(signed_in, project, lab, experiment, user):
    sweep = Sweep.objects.create(project=project, experiment=experiment, name="lr", method="grid",
                                 created_by=user, objective="reward/mean", axes=[],
                                 budget=4, max_concurrent=2, direction="maximize",
                                 study_name="table-test-lr")
    Run.objects.filter(pk=lab["small"][1].pk).update(sweep=sweep)
    assert shown_runs(signed_in, project, f"sweep={sweep.pk}") == [lab["small"][1].pk]


def test_filter_by_config_value_as_text_or_number(signed_in, project, lab):
    assert sorted(shown_runs(signed_in, project, "config_key=learning_rate&config_value=3e-5")) \
        == ids(*lab["large"])
    assert sorted(shown_runs(signed_in, project, "config_key=seed&config_value=1")) == ids(
        lab["small"][0], lab["large"][0])
    assert shown_runs(signed_in, project, "config_key=no_such&config_value=1") == []
    assert len(shown_runs(signed_in, project, "config_key=no_such&config_value=—")) == 6


def test_filter_by_metric_range(signed_in, project, lab):
    query = "metric_key=reward/mean&metric_min=0.3&metric_max=0.85"
    assert sorted(shown_runs(signed_in, project, query)) == ids(
        lab["small"][1], lab["small"][2], lab["large"][0])
    only_low = shown_runs(signed_in, project, "metric_key=reward/mean&metric_max=0.2")
    assert only_low == [lab["small"][0].pk]


@pytest.mark.parametrize("query, message", [
    ("metric_min=1", "Name the metric"),
    ("metric_key=x&metric_min=2&metric_max=1", "ends below where it starts"),
    ("metric_key=x&metric_min=nan", "Enter a number"),
    ("metric_key=x&metric_max=inf", "Enter a number"),
    ("sort=metric:mean:0:x", "k from 1 to 100"),
    ("group=config", "Name the settings to group by"),
    ("status=exploded", "Select a valid choice"),
])
def test_bad_filters_get_a_clear_message_not_a_500(signed_in, project, lab, query, message):
    response = signed_in.get(table(project, query))
    assert response.status_code == 422
    assert message in response.content.decode()


def test_starred_only(signed_in, project, lab):
    assert shown_runs(signed_in, project, "starred=on") == [lab["large"][0].pk]


def test_another_users_star_is_theirs(client, project, lab, member_of):
    client.force_login(member_of("viewer"))
    assert shown_runs(client, project, "starred=on") == []


def test_search_by_words_finds_names_and_says_so(signed_in, project, lab):
    response = signed_in.get(table(project, "q=grpo-lr"))
    assert "Searched run and experiment names" in response.content.decode()
    assert sorted(shown_runs(signed_in, project, "q=GRPO-LR")) == ids(*lab["large"])


def test_search_by_mlflow_filter_and_says_so(signed_in, project, lab):
    query = "q=metrics.%60reward/mean%60 > 0.7 and params.seed = 1"
    response = signed_in.get(table(project, query))
    assert "MLflow's filter grammar" in response.content.decode()
    assert shown_runs(signed_in, project, query) == [lab["large"][0].pk]


def test_a_filter_that_does_not_parse_gets_the_grammars_message(signed_in, project, lab):
    response = signed_in.get(table(project, "q=metrics.reward/mean > 0.5"))
    assert response.status_code == 422
    body = response.content.decode()
    assert "Not a filter rlab can read" in body and "Unexpected" in body
    assert 'data-run="' not in body


def test_sort_by_a_metric_puts_runs_without_it_last(signed_in, project, lab, user):
    ColumnSet.objects.create(user=user, project=project, columns=["metric:last:reward/mean"])
    ascending = shown_runs(signed_in, project, "sort=metric:last:reward/mean&order=asc")
    descending = shown_runs(signed_in, project, "sort=metric:last:reward/mean&order=desc")
    with_metric = [r.pk for r in [*lab["small"], *lab["large"]]]
    assert ascending == [*with_metric, lab["queued"].pk]
    assert descending == [*with_metric[::-1], lab["queued"].pk]


def test_columns_show_config_and_metric_values(signed_in, project, lab, user):
    run = lab["small"][2]
    log(run, "reward/mean", [(4, 0.1)])
    ColumnSet.objects.create(user=user, project=project, columns=[
        "config:seed", "metric:last:reward/mean", "metric:max:reward/mean",
        "metric:min:reward/mean", "metric:mean:2:reward/mean"])
    body = signed_in.get(table(project)).content.decode()
    row = re.search(rf'data-run="{run.pk}">(.*?)</tr>', body, re.S).group(1)
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells == ["3", "0.1", "0.6", "0", "0.35"]
    assert "reward/mean (max)" in body and "reward/mean (min)" in body


def test_the_header_links_sort_each_way(signed_in, project, lab):
    body = signed_in.get(table(project, "sort=status&order=desc")).content.decode()
    assert 'href="?sort=status&amp;order=asc"' in body
    assert 'href="?sort=name&amp;order=desc"' in body


def test_compare_goes_to_the_comparison_of_the_ticked_runs(signed_in, project, lab):
    picked = lab["large"]
    response = signed_in.post(act(project), {"action": "compare",
                                             "runs": [r.pk for r in picked]})
    assert response.url == (reverse("runs:compare", args=[project.pk])
                            + f"?runs={picked[0].pk}&runs={picked[1].pk}")


def test_tag_adds_a_team_tag_to_each_ticked_run(signed_in, project, lab):
    picked = lab["small"][1:]
    response = signed_in.post(act(project), {"action": "tag", "tag_name": "Seeds",
                                             "runs": [r.pk for r in picked],
                                             "back": "status=succeeded"})
    assert response.url == table(project, "status=succeeded")
    assert sorted(RunTag.objects.filter(name="seeds").values_list("run_id", flat=True)) == ids(
        *picked)


def test_a_viewer_can_compare_but_not_tag_or_cancel(client, project, lab, member_of):
    client.force_login(member_of("viewer"))
    run = lab["queued"]
    assert client.post(act(project), {"action": "compare", "runs": [run.pk]}).status_code == 302
    assert client.post(act(project), {"action": "tag", "tag_name": "x",
                                      "runs": [run.pk]}).status_code == 403
    assert client.post(act(project), {"action": "cancel", "runs": [run.pk]}).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and not run.tags.exists()


def test_the_table_hides_tag_and_cancel_from_a_viewer(client, project, lab, member_of):
    client.force_login(member_of("viewer"))
    body = client.get(table(project)).content.decode()
    assert 'id="compare-picked"' in body and 'id="cancel-picked"' not in body


def test_cancel_cancels_what_may_be_and_reports_what_had_ended(signed_in, project, lab):
    ended = lab["small"][0]
    response = signed_in.post(act(project), {"action": "cancel",
                                             "runs": [lab["queued"].pk, ended.pk]}, follow=True)
    lab["queued"].refresh_from_db()
    assert lab["queued"].status == RunStatus.CANCELLED
    body = response.content.decode()
    assert "Cancelled 1 run." in body and f"1 had already ended: {ended}." in body


def test_another_teams_run_ids_are_never_acted_on(signed_in, project, lab, other_user):
    from training.spec.config import RunConfig
    from webapp.experiments.services import experiment_create
    from webapp.projects.services import project_create
    from webapp.runs import services
    from webapp.teams.services import team_create

    theirs_team = team_create(name="Theirs", user=other_user)
    theirs = project_create(team=theirs_team, name="P", description="", user=other_user)
    experiment = experiment_create(project=theirs, author=other_user, name="e", description="",
                                   config=RunConfig(max_steps=3).to_dict())
    their_run = services.run_launch(experiment=experiment, user=other_user)
    signed_in.post(act(project), {"action": "cancel", "runs": [their_run.pk]})
    signed_in.post(act(project), {"action": "tag", "tag_name": "mine", "runs": [their_run.pk]})
    their_run.refresh_from_db()
    assert their_run.status == RunStatus.QUEUED and not their_run.tags.exists()


def test_an_action_with_no_runs_ticked_says_so(signed_in, project, lab):
    response = signed_in.post(act(project), {"action": "cancel"}, follow=True)
    assert "Tick the runs to act on first." in response.content.decode()


def test_actions_need_the_csrf_token(client, project, lab, user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post(act(project), {"action": "cancel", "runs": [lab["queued"].pk]})
    assert response.status_code == 403


def group_rows(body: str) -> list[tuple[str, str, list[str]]]:
    rows = re.findall(r'<tr class="group-row[^"]*".*?<span class="group-name">(.*?)</span>.*?'
                      r'<td class="num group-n">(\d+)</td>(.*?)</tr>', body, re.S)
    return [(name, n, re.findall(r'<td class="num">([^<]*)</td>', cells))
            for name, n, cells in rows]


def test_group_by_config_less_seed_collapses_seeds_with_mean_and_spread(signed_in, project, lab,
                                                                      user):
    ColumnSet.objects.create(user=user, project=project, columns=["metric:last:reward/mean"])
    body = signed_in.get(table(project, "group=seed_group")).content.decode()
    assert group_rows(body) == [
        ("learning_rate=2e-05", "4", ["0.4 ± 0.2 (of 3)"]),
        ("learning_rate=3e-05", "2", ["0.9 ± 0.1414"]),
    ]


def test_a_group_expands_to_its_runs(signed_in, project, lab, user):
    key = lab["large"][0].seed_group
    body = signed_in.get(table(project, f'group=seed_group&expand="{key}"')).content.decode()
    members = re.findall(r'<tr class="group-member">.*?href="/runs/(\d+)/"', body, re.S)
    assert sorted(int(pk) for pk in members) == ids(*lab["large"])


def test_group_by_chosen_settings(signed_in, project, lab, user):
    ColumnSet.objects.create(user=user, project=project, columns=["metric:max:reward/mean"])
    body = signed_in.get(table(project, "group=config&group_settings=learning_rate, max_steps"))
    assert group_rows(body.content.decode()) == [
        ("learning_rate=2e-05, max_steps=3", "4", ["0.4 ± 0.2 (of 3)"]),
        ("learning_rate=3e-05, max_steps=3", "2", ["0.9 ± 0.1414"]),
    ]


def test_group_by_tag_puts_a_run_in_each_of_its_tags(signed_in, project, lab, user):
    from webapp.reviews.services import run_tag_add

    run_tag_add(run=lab["large"][0], actor=user, name="baseline")
    rows = group_rows(signed_in.get(table(project, "group=tag")).content.decode())
    assert [(name, n) for name, n, _ in rows] == [("untagged", "3"), ("baseline", "2"),
                                                  ("good", "2")]


def test_a_key_that_splits_every_run_apart_says_so(signed_in, project, lab):
    body = signed_in.get(table(project, "group=config&group_settings=seed,learning_rate"))
    body = body.content.decode()
    assert ("Every run is its own group: nothing is grouped; group by fewer settings."
            in body)


def test_group_by_seed_group_names_the_experiment_when_settings_do_not_differ(
        signed_in, project, lab):
    body = signed_in.get(table(project, "group=seed_group&experiment="
                                        f"{lab['other'].pk}")).content.decode()
    assert [name for name, _, _ in group_rows(body)] == ["grpo-lr"]


def test_markup_in_names_tags_and_settings_is_shown_as_text(signed_in, project, lab, user):
    from webapp.reviews.services import run_tag_add

    payload = '<img src=x onerror="alert(1)">'
    run = lab["small"][0]
    Run.objects.filter(pk=run.pk).update(name=payload, config={**run.config,
                                                               "note": payload})
    run_tag_add(run=run, actor=user, name=payload)
    ColumnSet.objects.create(user=user, project=project, columns=["config:note"])
    for query in ("", "group=config&group_settings=note", "group=tag"):
        body = signed_in.get(table(project, query)).content.decode()
        assert "<img src=x" not in body
        assert "&lt;img src=x" in body


def test_htmx_gets_the_table_alone(signed_in, project, lab):
    response = signed_in.get(table(project, "status=queued"), HTTP_HX_REQUEST="true",
                             HTTP_HX_TARGET="runs-table-result")
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="runs-table-result">')
    assert "<html" not in body and f'data-run="{lab["queued"].pk}"' in body


@pytest.mark.parametrize("query", ["metric_key=x&metric_min=1e400", "experiment=abc",
                                   "group=everything", "sort=config:" + "k" * 300])
def test_hostile_parameters_get_a_message_not_a_500(signed_in, project, lab, query):
    assert signed_in.get(table(project, query)).status_code == 422


@pytest.mark.parametrize("query", ["q=a%00b", "config_key=a%00&config_value=1",
                                   "sort=config:a%00"])
def test_a_nul_byte_is_refused_before_the_table(signed_in, project, lab, query):
    assert signed_in.get(table(project, query)).status_code == 400


def test_a_forged_expand_is_no_group_opened(signed_in, project, lab):
    response = signed_in.get(table(project, "group=seed_group&expand=%7Bnot json"))
    assert response.status_code == 200 and 'class="group-member"' not in response.content.decode()


def test_a_seed_group_links_to_its_chart_on_the_groups_page(signed_in, project, lab):
    body = signed_in.get(table(project, "group=seed_group")).content.decode()
    link = re.findall(r'class="small group-link" href="([^"]+)"', body)[1]
    chart = signed_in.get(html.unescape(link))
    assert chart.status_code == 200
    assert [sorted(g.run_ids) for g in chart.context["view"].picked] == [ids(*lab["large"])]
