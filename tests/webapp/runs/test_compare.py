"""Run comparison: the picker, who may compare what, the config diff and the links to it."""

from __future__ import annotations

import doctest
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from training.spec.config import RunConfig
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import compare, ingestion, services
from webapp.runs.compare import config_diff, flatten
from webapp.runs.models import Run
from webapp.teams.services import team_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_runs(project, experiment, user):
    """grpo-small #1 and grpo-lr #1: other learning rate and seed, and their own metrics."""
    config = RunConfig(max_steps=3, prompts_per_step=2, group_size=2, learning_rate=3e-5,
                       seed=7).to_dict()
    other = experiment_create(project=project, author=user, name="grpo-lr", description="",
                              config=config)
    first = services.run_launch(experiment=experiment, user=user)
    second = services.run_launch(experiment=other, user=user)
    now = timezone.now()
    ingestion.metrics_ingest(run_id=first.pk, points=[
        ingestion.MetricSample(key="reward/mean", step=s, value=0.1 * s, wall_time=now)
        for s in (1, 2)])
    ingestion.metrics_ingest(run_id=second.pk, points=[
        ingestion.MetricSample(key=key, step=1, value=0.9, wall_time=now)
        for key in ("reward/mean", "loss/policy")])
    return first, second


def compare_url(project, *runs, **params) -> str:
    query = "&".join([f"runs={run.pk}" for run in runs] +
                     [f"{name}={value}" for name, value in params.items()])
    return f"{reverse('runs:compare', args=[project.pk])}?{query}"


def test_doctests_pass():
    assert doctest.testmod(compare).failed == 0


def test_project_page_links_to_the_comparison(signed_in, project):
    body = signed_in.get(project.get_absolute_url()).content.decode()
    assert f'href="{reverse("runs:compare", args=[project.pk])}"' in body


def test_experiment_page_ticks_runs_to_compare(signed_in, experiment, user):
    runs = [services.run_launch(experiment=experiment, user=user) for _ in range(2)]
    body = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert f'action="{reverse("runs:compare", args=[experiment.project_id])}"' in body
    for run in runs:
        assert f'name="runs" value="{run.pk}"' in body
    assert 'id="compare-selected"' in body


def test_picker_lists_the_projects_runs_across_experiments(signed_in, project, two_runs):
    body = signed_in.get(reverse("runs:compare", args=[project.pk])).content.decode()
    for run in two_runs:
        assert f'name="runs" value="{run.pk}"' in body
    assert "grpo-small" in body and "grpo-lr" in body
    assert 'id="compare-hint"' in body and 'id="compare-legend"' not in body


def test_compared_runs_get_a_legend_with_their_metrics_urls(signed_in, project, two_runs):
    first, second = two_runs
    body = signed_in.get(compare_url(project, first, second)).content.decode()
    legend = body[body.index('id="compare-legend"'):body.index('id="compare-charts"')]
    assert re.findall(r'data-run-id="(\d+)"', legend) == [str(first.pk), str(second.pk)]
    assert reverse("live:metrics", args=[first.pk]) in legend
    assert "grpo-small #1" in legend and "grpo-lr #1" in legend
    assert 'data-compare-charts' in body
    for run in two_runs:  # ticked in the picker
        assert re.search(rf'value="{run.pk}" id="pick-{run.pk}" checked', body)


def test_config_diff_highlights_the_settings_that_differ(signed_in, project, two_runs):
    body = signed_in.get(compare_url(project, *two_runs)).content.decode()
    differing = set(re.findall(r'<tr class="differs" data-key="([^"]+)"', body))
    assert differing == {"learning_rate", "seed"}
    assert '<tr class="same" data-key="algorithm">' in body
    assert "2 of" in body and "settings differ" in body
    assert 'class="table compare-table config-diff"' in body  # every row shown


def test_differences_only_hides_the_shared_settings(signed_in, project, two_runs):
    body = signed_in.get(compare_url(project, *two_runs, only_diff=1)).content.decode()
    assert 'class="table compare-table config-diff only-diff"' in body
    assert re.search(r'id="only-diff"[^>]*checked', body)


def test_last_values_table_shows_each_runs_last_point(signed_in, project, two_runs):
    body = signed_in.get(compare_url(project, *two_runs)).content.decode()
    table = body[body.index('id="last-values"'):body.index('id="config-diff"')]
    rows = dict(re.findall(r'<tr><th class="mono">([^<]+)</th>(.*?)</tr>', table, re.S))
    assert list(rows) == ["reward/mean", "loss/policy"]
    assert "0.2000" in rows["reward/mean"] and "0.9000" in rows["reward/mean"]
    assert "—" in rows["loss/policy"]  # the first run never logged it


def test_htmx_picks_get_only_the_result(signed_in, project, two_runs):
    response = signed_in.get(compare_url(project, *two_runs), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="compare-result">')
    assert "<html" not in body and 'id="compare-form"' not in body


def test_runs_the_user_cannot_see_are_left_out(signed_in, project, two_runs, other_user):
    """Ids of another team's runs, or of another project's, are dropped as if absent."""
    team = team_create(name="Elsewhere", user=other_user)
    foreign_project = project_create(team=team, name="Secret", description="", user=other_user)
    foreign = services.run_launch(
        experiment=experiment_create(project=foreign_project, author=other_user,
                                     name="secret-experiment", description="",
                                     config=RunConfig().to_dict()),
        user=other_user)
    body = signed_in.get(compare_url(project, two_runs[0], foreign) + "&runs=abc").content.decode()
    assert "secret-experiment" not in body
    assert re.findall(r'data-run-id="(\d+)"', body) == [str(two_runs[0].pk)]


def test_runs_of_another_project_of_the_team_are_left_out(signed_in, team, user, two_runs,
                                                          project):
    sibling = project_create(team=team, name="Sibling", description="", user=user)
    theirs = services.run_launch(
        experiment=experiment_create(project=sibling, author=user, name="sibling-exp",
                                     description="", config=RunConfig().to_dict()),
        user=user)
    body = signed_in.get(compare_url(project, theirs, *two_runs)).content.decode()
    assert re.findall(r'data-run-id="(\d+)"', body) == [str(r.pk) for r in two_runs]


def test_outsiders_get_404(client, project, two_runs, other_user):
    client.force_login(other_user)
    assert client.get(compare_url(project, *two_runs)).status_code == 404


def test_at_most_eight_runs_are_compared(signed_in, project, experiment, user):
    runs = [services.run_launch(experiment=experiment, user=user) for _ in range(10)]
    body = signed_in.get(compare_url(project, *runs)).content.decode()
    assert len(re.findall(r'data-run-id="', body)) == compare.MAX_COMPARED


def test_model_text_in_names_is_escaped(signed_in, project, user):
    name = '<img src=x onerror=alert(1)>'
    hostile = experiment_create(project=project, author=user, name=name, description="",
                                config=RunConfig().to_dict())
    run = services.run_launch(experiment=hostile, user=user)
    body = signed_in.get(compare_url(project, run)).content.decode()
    assert "<img src=x" not in body and "&lt;img src=x" in body


def test_a_setting_missing_from_a_run_differs():
    rows = config_diff([Run(config={"lr": 1, "beta": 0.0}), Run(config={"lr": 1.0})])
    assert [(r.key, r.values, r.differs) for r in rows] == [
        ("beta", ["0.0", "—"], True), ("lr", ["1", "1.0"], False)]


def test_true_and_one_are_different_settings():
    assert config_diff([Run(config={"flag": True}), Run(config={"flag": 1})])[0].differs


def test_settings_follow_the_forms_order():
    rows = config_diff([Run(config={"zeta": 1, "seed": 1, "algorithm": "grpo"})])
    assert [row.key for row in rows] == ["algorithm", "seed", "zeta"]


def test_nested_settings_compare_one_by_one():
    assert flatten({"kl": {"beta": 0.1}, "tags": [], "empty": {}}) == {
        "kl.beta": 0.1, "tags": [], "empty": {}}
