"""Searches answered as a real MLflow server answers them: the same runs are logged with the real
mlflow client to an `mlflow server` (SQLite store) and to rlab, and each filter and order_by of
the table below must find the same runs, in the same order, on both, or be refused by both."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import requests

from tests.stack import Process, free_port

BASE_MS = 1_765_000_000_000  # every time logged, fixed so both servers hold the same


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server, started once for the module."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = Process("mlflow", [str(Path(sys.executable).parent / "mlflow"), "server",
                                "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                                "--default-artifact-root", str(folder / "artifacts"),
                                "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                     {**os.environ, "PYTHONUNBUFFERED": "1"}, folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.proc.poll() is not None:
                server.stop()
                raise AssertionError(f"mlflow server did not start:\n{server.output()[-3000:]}")
            time.sleep(0.5)
    yield url
    server.stop()


def metric(key: str, step: int, value: float, at: int):
    from mlflow.entities import Metric
    return Metric(key, value, BASE_MS + at, step)


# name: (params, tags, metrics as (key, step, value, ms after BASE_MS), end status or None)
RUNS = {
    "alpha": ({"lr": "0.001", "model": "gpt2", "optimizer.name": "adam", "batch size": "32"},
              {"method": "grpo", "team": "RL-core"},
              [("loss", 0, 2.0, 10), ("loss", 1, 1.0, 20), ("loss", 2, 0.5, 30),
               ("acc", 2, 0.7, 30)], "FINISHED"),
    "beta": ({"lr": "0.0001", "model": "gpt2-medium", "optimizer.name": "sgd"},
             {"method": "spo", "note": "100% done"},
             [("loss", 0, 3.0, 40), ("loss", 1, 0.25, 50), ("acc", 1, 0.9, 50),
              ("reward/mean", 1, 1.0, 50)], "FINISHED"),
    "gamma": ({"lr": "1e-05", "model": "llama", "batch size": "64"},
              {"method": "spo", "team": "rl-core"},
              [("loss", 3, 2.0, 60)], "FAILED"),
    # Steps logged out of order: the latest value is the highest step's, not the newest one.
    "delta": ({"lr": "0.01"}, {"method": "dpo"},
              [("loss", 5, 0.75, 70), ("loss", 2, 0.1, 80), ("acc", 5, 0.8, 70)], "KILLED"),
    "epsilon": ({"batch size": "64", "model": "GPT2"}, {"team": "infra"},
                [("acc", 0, 0.8, 90), ("reward/mean", 0, -1.0, 90)], None),
    "zeta": ({"lr": "0.001", "model": "mistral"}, {"method": "grpo"},
             [("loss", 0, 1.5, 100), ("loss", 1, float("nan"), 110)], "FINISHED"),
}

FILTERS = [
    "",
    "params.model = 'gpt2'",
    "params.model != 'gpt2'",
    "params.model LIKE 'gpt%'",
    "params.model LIKE 'GPT%'",
    "params.model ILIKE 'GPT%'",
    "params.model LIKE 'gpt_'",
    "params.model LIKE '%a%'",
    "params.`batch size` = '64'",
    "params.optimizer.name = 'adam'",
    "params.`optimizer.name` != 'adam'",
    "params.lr = '0.001'",
    "params.lr = '1e-3'",  # a string compare: '0.001' is another string
    "params.model IS NULL",
    "params.model IS NOT NULL",
    "params.unknown = 'x'",
    "tags.method = 'spo'",
    "tags.method = 'spo' and params.model = 'llama'",
    "tags.method = \"grpo\" AND params.lr = '0.001'",
    "tags.team ILIKE 'rl-%'",
    "tags.team LIKE 'RL%'",
    "tags.note LIKE '100%'",
    "tags.`team` IS NULL",
    "tags.mlflow.runName = 'beta'",
    "metrics.loss < 1",
    "metrics.loss <= 0.5",
    "metrics.loss = 2",
    "metrics.loss >= 0.75",
    "metrics.loss != 0.5",
    "metrics.loss > -1",
    "metrics.loss > 0.25 and metrics.acc >= 0.7",
    "metrics.`reward/mean` = 1.0",
    "metrics.`reward/mean` < 0",
    "metrics.acc > 1e-1",
    "metrics.unknown > 0",
    "attributes.status = 'FINISHED'",
    "attributes.status != 'RUNNING'",
    "attributes.status LIKE 'F%'",
    "attributes.status ILIKE 'killed'",
    "attributes.run_name = 'gamma'",
    "run_name ILIKE '%A'",
    "attributes.`run name` = 'beta'",
    "attributes.start_time > {start:gamma}",
    "created >= {start:gamma}",
    "attributes.start_time = {start:beta}",
    "attributes.end_time < {end:gamma}",
    "attributes.run_id IN ('{id:beta}', '{id:delta}')",
    "attributes.run_id NOT IN ('{id:beta}')",
    "attributes.run_id = '{id:zeta}'",
    "params.model = 'gpt2' and",  # MLflow lets a trailing AND pass
    "params.lr != '0.001'",  # runs without lr are not "!="
    "params.model LIKE '%'",
    "metrics.loss >= 0.5 AND metrics.loss <= 2",
    "attributes.run_id LIKE '%'",
    "attributes.end_time > 0",
    "tags.method != 'spo' and tags.team IS NOT NULL",
]
ORDERS = [
    [], ["metrics.loss"], ["metrics.loss DESC"], ["metrics.acc ASC"], ["params.model"],
    ["params.model DESC"], ["params.`batch size` DESC", "metrics.loss ASC"],
    ["tags.method", "metrics.acc DESC"], ["attributes.run_name"], ["run_name DESC"],
    ["start_time ASC"], ["attributes.end_time DESC"], ["attributes.status"],
    ["tags.team ASC"],
]
REFUSED = [
    "params.lr > '0.001'",  # params take = != LIKE ILIKE only
    "params.lr = 0.001",  # a param's value is a quoted string
    "metrics.loss = 'low'",
    "metrics.loss > 1 or params.model = 'gpt2'",
    "metrics.loss IS NULL",
    "attributes.unknown = 'x'",
    "weights.loss > 1",
    "params.model IN ('gpt2')",
    "attributes.start_time > 'yesterday'",
    "params.model =",
    "attributes.status IN ('FINISHED')",  # IN takes run ids only
    "attributes.end_time IS NULL",
    "metrics.loss LIKE '1%'",
]


def log_runs(client, experiment_id: str) -> dict[str, str]:
    """The table's runs, in its order, one second apart; their ids by name."""
    from mlflow.entities import Param, RunTag

    ids = {}
    for index, (name, (params, tags, metrics, status)) in enumerate(RUNS.items()):
        run = client.create_run(experiment_id, start_time=BASE_MS + index * 1000, run_name=name)
        ids[name] = run.info.run_id
        client.log_batch(run.info.run_id,
                         metrics=[metric(*point) for point in metrics],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        if status is not None:
            client.set_terminated(run.info.run_id, status,
                                  end_time=BASE_MS + index * 1000 + 500)
    return ids


def filled(template: str, ids: dict[str, str]) -> str:
    """A filter with `{id:name}`, `{start:name}` and `{end:name}` replaced for one server."""
    for index, name in enumerate(RUNS):
        template = (template.replace(f"{{id:{name}}}", ids[name])
                    .replace(f"{{start:{name}}}", str(BASE_MS + index * 1000))
                    .replace(f"{{end:{name}}}", str(BASE_MS + index * 1000 + 500)))
    return template


class Side:
    """One server with the table's runs: an MlflowClient, its experiment and the runs' ids."""

    def __init__(self, uri: str):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        # The MLflow server keeps its experiments from one test to the next.
        self.experiment = self.client.create_experiment(f"runs-{uuid.uuid4().hex}")
        self.ids = log_runs(self.client, self.experiment)

    def names(self, filter_string: str, order_by: list[str] | None = None) -> list[str] | str:
        """The names found, in order, or "refused" for a filter the server refuses."""
        from mlflow.exceptions import MlflowException

        try:
            runs = self.client.search_runs([self.experiment], filled(filter_string, self.ids),
                                           order_by=order_by)
        except MlflowException as exc:
            assert exc.error_code == "INVALID_PARAMETER_VALUE", exc
            return "refused"
        return [run.info.run_name for run in runs]


@pytest.fixture
def sides(tracking, mlflow_server) -> tuple[Side, Side]:
    return Side(mlflow_server), Side(os.environ["MLFLOW_TRACKING_URI"])


def test_every_filter_finds_what_mlflow_finds(sides):
    mlflow, rlab = sides
    differing = {f: (mlflow.names(f), rlab.names(f)) for f in FILTERS + REFUSED}
    differing = {f: pair for f, pair in differing.items() if pair[0] != pair[1]}
    assert not differing
    assert all(mlflow.names(f) == "refused" for f in REFUSED)
    assert mlflow.names("metrics.loss < 1") == ["delta", "beta", "alpha"]  # the table bites


def test_every_order_is_mlflows(sides):
    mlflow, rlab = sides
    differing = {}
    for order_by in ORDERS:
        for filter_string in ("", "params.model IS NOT NULL"):
            found = mlflow.names(filter_string, order_by), rlab.names(filter_string, order_by)
            if found[0] != found[1]:
                differing[f"{filter_string} / {order_by}"] = found
    assert not differing


def test_pages_of_a_search_are_mlflows(sides):
    mlflow, rlab = sides
    for side in sides:
        pages, token = [], None
        while True:
            page = side.client.search_runs([side.experiment], order_by=["metrics.loss"],
                                           max_results=2, page_token=token)
            pages.append([run.info.run_name for run in page])
            token = page.token
            if not token:
                break
        side.pages = pages
    assert rlab.pages == mlflow.pages
    assert len(mlflow.pages) == 3


def test_searched_runs_carry_their_latest_metrics(sides):
    mlflow, rlab = sides

    def latest(side: Side) -> dict[str, dict[str, str]]:
        runs = side.client.search_runs([side.experiment])
        return {run.info.run_name: {k: repr(v) for k, v in run.data.metrics.items()}
                for run in runs}

    assert latest(rlab) == latest(mlflow)
    assert latest(rlab)["delta"] == {"loss": "0.75", "acc": "0.8"}


def test_metric_history_is_mlflows(sides):
    mlflow, rlab = sides

    def history(side: Side, name: str, key: str) -> list[tuple]:
        points = side.client.get_metric_history(side.ids[name], key)
        return [(p.step, repr(p.value), p.timestamp) for p in points]

    for name, (_, _, metrics, _) in RUNS.items():
        for key in {point[0] for point in metrics}:
            assert history(rlab, name, key) == history(mlflow, name, key), (name, key)
    assert history(rlab, "delta", "loss") == [(5, "0.75", BASE_MS + 70),
                                              (2, "0.1", BASE_MS + 80)]


def test_bulk_interval_history_is_mlflows(sides, token):
    mlflow, rlab = sides

    def bulk(side: Side, **params) -> list[tuple]:
        uri = side.client.tracking_uri
        prefix = "ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
        answer = requests.get(f"{uri}/{prefix}", headers={"Authorization": f"Bearer {token}"},
                              params={"run_ids": [side.ids["alpha"], side.ids["beta"]],
                                      "metric_key": "loss", **params}, timeout=30)
        assert answer.status_code == 200, answer.text
        ids = {run_id: name for name, run_id in side.ids.items()}
        return [(ids[m["run_id"]], m["step"], m["value"], m["timestamp"])
                for m in answer.json()["metrics"]]

    for params in ({}, {"max_results": 2}, {"start_step": 1, "end_step": 2},
                   {"max_results": 1}):
        assert bulk(rlab, **params) == bulk(mlflow, **params), params


def test_experiment_search_is_mlflows(tracking, mlflow_server):
    from mlflow import MlflowClient

    def found(uri: str) -> dict[str, list[str]]:
        client = MlflowClient(tracking_uri=uri)
        for name in ("search-b", "search-a", "other"):
            client.create_experiment(name)
        return {f"{f} / {o}": [e.name for e in client.search_experiments(
                    filter_string=f, order_by=o)]
                for f, o in (("name LIKE 'search-%'", ["name"]),
                             ("name ILIKE 'SEARCH-%'", ["name DESC"]),
                             ("name != 'other' and name LIKE 'search%'", None),
                             ("attribute.name = 'other'", None))}

    assert found(os.environ["MLFLOW_TRACKING_URI"]) == found(mlflow_server)


# For the lead: rlab keeps the first value logged at a step until the change that keeps the
# latest (by timestamp) lands; then this passes, and strict=True fails to say the mark can go.
def test_a_repeated_step_counts_with_its_latest_value(tracking, mlflow_server):
    from mlflow import MlflowClient

    def found(uri: str) -> list[str]:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.create_experiment(f"repeat-{uuid.uuid4().hex}")
        run = client.create_run(experiment, start_time=BASE_MS, run_name="repeated")
        client.log_batch(run.info.run_id, metrics=[metric("loss", 1, 1.0, 10)])
        client.log_batch(run.info.run_id, metrics=[metric("loss", 1, 2.0, 20)])
        return [r.info.run_name for r in client.search_runs([experiment], "metrics.loss = 2")]

    assert found(mlflow_server) == ["repeated"]
    assert found(os.environ["MLFLOW_TRACKING_URI"]) == ["repeated"]
