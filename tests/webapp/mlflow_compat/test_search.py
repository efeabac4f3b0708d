"""Search and metric history through Django's test client: who may search, how a bad filter,
page token or request is told, what a search costs, and the same filters on rlab's own runs
list. That the answers are MLflow's is test_search_against_mlflow.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from webapp.api.tokens import token_create
from webapp.runs.search_grammar import SearchError, parse_filter, parse_order_by
from webapp.runs.ingestion import MetricSample, metrics_ingest
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = pytest.mark.django_db
API = "api/2.0/mlflow"


def caller(user) -> Client:
    return Client(headers={"Authorization": f"Bearer {token_create(user=user, name='t')[1]}"})


def search(client: Client, project, **body):
    return client.post(f"/mlflow/{project.pk}/{API}/runs/search", json.dumps(body),
                       content_type="application/json")


@pytest.fixture
def tracked(project, user):
    """Three tracked runs: their params, tags and a loss of 40 steps each."""
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    runs = []
    for index, (lr, method) in enumerate((("1e-05", "spo"), ("0.001", "grpo"),
                                          ("0.01", "spo"))):
        run = tracked_run_create(experiment=experiment, user=user, name=f"run-{index}",
                                 params={"lr": lr}, tags={"method": method})
        metrics_ingest(run_id=run.pk, points=[
            MetricSample("loss", step, 1.0 / (step + index + 1), datetime.now(UTC))
            for step in range(40)])
        runs.append(run)
    return experiment, runs


@pytest.mark.parametrize(("text", "named"), [
    ("metrics.loss > 1 or params.a = 'b'", "has no OR ('OR' (character 18))"),
    ("params.lr > '0.1'", "Invalid comparator '>' for params.lr"),
    ("params.lr = 0.1", "'0.1' (character 13)"),
    ("metrics.loss = 'low'", "'low'"),
    ("weights.loss > 1", "Invalid entity type 'weights'"),
    ("attributes.colour = 'red'", "Invalid attribute key 'colour'"),
    ("params.model = 'gpt2' params.x = 'y'", "'params.x' (character 23)"),
    ("params.model = 'gpt2", "(character 16)"),
    ("params.model IN ('a')", "IN takes run_id only"),
    ("metrics.loss IS NULL", "IS NULL and IS NOT NULL take params and tags only"),
    ("params.model =", "ends where a value"),
])
def test_a_filter_outside_the_grammar_is_refused_naming_its_token(text, named):
    with pytest.raises(SearchError) as raised:
        parse_filter(text)
    assert named in str(raised.value)


def test_keys_may_be_quoted_and_hold_dots_and_spaces():
    clauses = parse_filter("params.`batch size` = '8' and tags.\"a.b\" LIKE 'x%' and "
                           "metrics.opt.lr >= -1.5e-3 and `run name` != 'x'")
    assert [(c.field.kind, c.field.key, c.comparator, c.value) for c in clauses] == [
        ("param", "batch size", "=", "8"), ("tag", "a.b", "LIKE", "x%"),
        ("metric", "opt.lr", ">=", -1.5e-3), ("attribute", "run_name", "!=", "x")]
    assert parse_order_by("metrics.`reward/mean` desc").ascending is False


def test_an_outsider_finds_no_project_and_a_viewer_may_search(project, tracked, other_user,
                                                              member_of):
    assert search(caller(other_user), project).status_code == 404
    answer = search(caller(member_of("viewer")), project, experiment_ids=[str(tracked[0].pk)],
                    filter="tags.method = 'spo'", order_by=["params.lr DESC"])
    assert answer.status_code == 200
    # Params sort as strings, as in MLflow: "1e-05" after "0.01".
    assert [run["info"]["run_name"] for run in answer.json()["runs"]] == ["run-0", "run-2"]


def test_a_bad_filter_or_page_token_is_invalid_parameter_value(project, tracked, user):
    client = caller(user)
    bad_filter = search(client, project, experiment_ids=[str(tracked[0].pk)],
                        filter="metrics.loss > 'x'")
    assert bad_filter.status_code == 400
    assert bad_filter.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'x'" in bad_filter.json()["message"]
    bad_token = search(client, project, experiment_ids=[str(tracked[0].pk)],
                       page_token="bm90IGpzb24=")
    assert bad_token.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    too_many = search(client, project, experiment_ids=[str(tracked[0].pk)],
                      max_results=50_001)
    assert too_many.status_code == 400


def test_a_search_costs_the_same_queries_for_one_run_or_many(project, tracked, user):
    client = caller(user)
    experiment, runs = tracked

    def queries(filter_string: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            answer = search(client, project, experiment_ids=[str(experiment.pk)],
                            filter=filter_string)
        assert answer.status_code == 200
        return len(captured)

    queries("")  # the token's first use is recorded once
    assert queries("attributes.run_name = 'run-0'") == queries("metrics.loss < 10")


def test_history_of_another_projects_run_is_not_found(project, tracked, other_user, user):
    from webapp.projects.services import project_create
    from webapp.teams.services import team_create

    elsewhere = project_create(team=team_create(name="Others", user=other_user),
                               name="Theirs", description="", user=other_user)
    run = tracked[1][0]
    answer = caller(other_user).get(f"/mlflow/{elsewhere.pk}/{API}/metrics/get-history",
                                    {"run_id": run.pk, "metric_key": "loss"})
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_bulk_history_needs_both_step_bounds_and_at_most_100_runs(project, tracked, user):
    url = f"/mlflow/{project.pk}/ajax-{API}/metrics/get-history-bulk-interval"
    client, run = caller(user), tracked[1][0]
    one_bound = client.get(url, {"run_ids": run.pk, "metric_key": "loss", "start_step": 3})
    assert "both must be specified" in one_bound.json()["message"]
    too_many = client.get(url, {"run_ids": [str(run.pk)] * 101, "metric_key": "loss"})
    assert too_many.status_code == 400
    sampled = client.get(url, {"run_ids": run.pk, "metric_key": "loss", "max_results": 7})
    steps = [point["step"] for point in sampled.json()["metrics"]]
    assert len(steps) == 7 and steps[0] == 0 and steps[-1] == 39


@pytest.mark.parametrize("filter_string", [
    "params.lr LIKE 'a\\'", "tags.method ILIKE '\\%'", "params.`'); DROP TABLE x; --` = 'a'",
    "metrics.loss > 1e400", "attributes.start_time < -1e30", "params.\"\" = 'x'",
])
def test_hostile_filters_find_nothing_and_break_nothing(project, tracked, user, filter_string):
    answer = search(caller(user), project, experiment_ids=[str(tracked[0].pk)],
                    filter=filter_string)
    assert answer.status_code in (200, 400), answer.content
    assert answer.json().get("runs", []) == []


def test_a_nul_in_a_filter_is_refused(project, tracked, user):
    answer = search(caller(user), project, experiment_ids=[str(tracked[0].pk)],
                    filter="params.lr = 'a\x00'")
    assert answer.status_code == 400
    assert "NUL" in answer.json()["message"]
