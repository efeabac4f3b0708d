"""rlab's own runs list with MLflow's search filter and order_by (`GET /api/runs?filter=`),
where a parameter may also be compared with a bare number and statuses are rlab's words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from webapp.api.tokens import token_create
from webapp.runs.ingestion import MetricSample, metrics_ingest
from webapp.runs.services import run_launch
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def tracked(project, user):
    """Three tracked runs with a learning rate, a method and a loss each."""
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    runs = []
    for index, (lr, method) in enumerate((("1e-05", "spo"), ("0.001", "grpo"),
                                          ("0.01", "spo"))):
        run = tracked_run_create(experiment=experiment, user=user, name=f"run-{index}",
                                 params={"lr": lr}, tags={"method": method})
        metrics_ingest(run_id=run.pk, points=[MetricSample("loss", 9, 1.0 / (index + 1),
                                                           datetime.now(UTC))])
        runs.append(run)
    return runs


@pytest.fixture
def ids(user):
    """ids(filter=..., order_by=...) -> the ids of the runs listed."""
    client = Client(headers={"Authorization": f"Bearer {token_create(user=user, name='t')[1]}"})

    def listed(**params) -> list[int]:
        answer = client.get("/api/runs", params)
        assert answer.status_code == 200, answer.content
        return [run["id"] for run in answer.json()["items"]]

    listed.client = client
    return listed


def test_params_compare_as_numbers_with_a_bare_number(ids, tracked, experiment, user):
    launched = run_launch(experiment=experiment, user=user)  # its config: JSON numbers
    assert ids(filter="params.lr > 1e-4 and tags.method = 'spo'") == [tracked[2].pk]
    assert ids(filter=f"params.learning_rate = {launched.config['learning_rate']}") == [
        launched.pk]
    assert ids(filter="params.lr = '1e-05'") == [tracked[0].pk]


def test_statuses_are_rlabs_words(ids, tracked, experiment, user):
    launched = run_launch(experiment=experiment, user=user)
    assert ids(filter="attributes.status = 'queued'") == [launched.pk]
    assert ids(filter="status = 'running'", order_by="run_name") == [r.pk for r in tracked]


def test_order_by_keys_sort_the_list(ids, tracked):
    # Params sort as strings, as in MLflow: "0.001" before "1e-05".
    assert ids(filter="params.lr <= 0.001", order_by="params.lr") == [tracked[1].pk,
                                                                       tracked[0].pk]
    assert ids(order_by=["metrics.loss ASC", "run_name"]) == [r.pk for r in reversed(tracked)]


def test_a_filter_outside_the_grammar_is_400_naming_its_token(ids):
    refused = ids.client.get("/api/runs", {"filter": "params.lr >> 1"})
    assert refused.status_code == 400
    assert "found '>' (character 12)" in refused.json()["detail"]
