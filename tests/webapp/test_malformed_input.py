"""Input rlab will not store (webapp.common.inputs) is refused at every edge with a 400 or 422
that names the field, and nothing of the request is stored: a NUL or a lone surrogate in any
text, NaN or Infinity where a number must be finite, JSON nested 100,000 deep, an MLflow step
past int64, in the REST API, the MLflow-compatible endpoints and the pages' addresses. What the
worker itself writes is made storable instead, so that a run never stops on a model's NUL.

Bodies are sent as a client's JSON encoder writes them: json.dumps writes a NUL as \\u0000, a lone
surrogate as \\ud83d, and NaN and Infinity bare."""

from __future__ import annotations

import io
import json
import math
from urllib.parse import urlencode

import pytest
import requests
from django.test import Client

from tests.stack import start_web
from webapp.api.tokens import token_create
from webapp.common.inputs import MAX_JSON_DEPTH
from webapp.experiments.models import Experiment
from webapp.experiments.services import experiment_create
from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.models import LogLine, MetricPoint, Rollout, Run
from webapp.runs.services import run_launch
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create
from worker.supervisor import RunSupervisor

pytestmark = pytest.mark.django_db

NAN, INF = float("nan"), float("inf")
NUL, SURROGATE = "\x00", "\ud83d"
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_create(user=user, name='t')[1]}"}


@pytest.fixture
def api(bearer) -> Client:
    return Client(headers=bearer)


@pytest.fixture
def run(experiment, user) -> Run:
    return run_launch(experiment=experiment, user=user)


@pytest.fixture
def tracked(project, user) -> Run:
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="script")
    return tracked_run_create(experiment=experiment, user=user, params={"lr": "0.1"})


def post(client: Client, path: str, body) -> object:
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data, content_type="application/json")


def located(response) -> dict[tuple, str]:
    """A 422's errors as {loc: message}."""
    assert response.status_code == 422, response.content
    return {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}


def nested(depth: int):
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def rollout(**fields) -> dict:
    return {"prompt": "1+1", "completion": "2", "reward": 1.0, **fields}


# The REST API -------------------------------------------------------------------------------------

# (endpoint, body, the error's loc, what its message says)
METRICS = [
    ({"points": [{"key": f"loss{NUL}", "step": 1, "value": 1.0}]}, ("points", 0, "key"), "NUL"),
    ({"series": [{"key": f"a{NUL}", "steps": [1], "values": [1.0]}]}, ("series", 0, "key"),
     "NUL"),
    ({"points": [{"key": "loss", "step": 1, "value": NAN}]}, ("points", 0, "value"), "finite"),
    ({"series": [{"key": "loss", "steps": [1, 2], "values": [1.0, -INF]}]},
     ("series", 0, "values", 1), "finite"),
    ({"points": [{"key": "loss", "step": 2**63, "value": 1.0}]}, ("points", 0, "step"),
     "less than or equal"),
    # 1 BC in UTC: Postgres would store it, and no read of the run could load it back.
    ({"points": [{"key": "loss", "step": 1, "value": 1.0, "time": "0001-01-01T00:00:00+05:00"}]},
     ("points", 0, "time"), "greater than or equal"),
    ({"series": [{"key": "loss", "steps": [1], "values": [1.0],
                  "times": ["9999-12-31T23:00:00-05:00"]}]}, ("series", 0, "times", 0),
     "less than or equal"),
]
ROLLOUTS = [
    (rollout(prompt=f"1+{NUL}1"), ("prompt",), "NUL"),
    (rollout(completion=f"ok {SURROGATE}"), ("completion",), "lone surrogate"),
    (rollout(prompt_id=NUL), ("prompt_id",), "NUL"),
    (rollout(reward=INF), ("reward",), "finite"),
    (rollout(advantage=NAN), ("advantage",), "finite"),
    (rollout(rewards={"accuracy": NAN}), ("rewards", "accuracy"), "finite"),
    (rollout(extra={"judge": {"scores": [0.5, NAN]}}), ("extra",), "judge.scores[1] is NaN"),
    (rollout(extra={"note": f"a{NUL}"}), ("extra",), "NUL"),
    (rollout(extra={f"k{SURROGATE}": 1}), ("extra",), "lone surrogate"),
    (rollout(extra=nested(MAX_JSON_DEPTH + 8)), ("extra",), "nested more than"),
    (rollout(tokens={"text": ["2", NUL]}), ("tokens", "text", 1), "NUL"),
    (rollout(tokens={"text": ["2"], "logprob": [INF]}), ("tokens", "logprob", 0), "finite"),
    (rollout(tokens={"text": ["2"], "entropy": [NAN]}), ("tokens", "entropy", 0), "finite"),
    (rollout(tokens={"text": ["2"], "kl": [-INF]}), ("tokens", "kl", 0), "finite"),
]


@pytest.mark.parametrize(("body", "loc", "says"), METRICS)
def test_a_metric_batch_rlab_cannot_store_is_422_naming_the_field(api, run, body, loc, says):
    found = located(post(api, f"/api/runs/{run.pk}/metrics", body))

    assert says in found[("body", *loc)]
    assert not MetricPoint.objects.exists()


@pytest.mark.parametrize(("item", "loc", "says"), ROLLOUTS)
def test_a_rollout_rlab_cannot_store_is_422_naming_the_field(api, run, item, loc, says):
    body = {"step": 1, "items": [rollout(), {**item, "group": 1}]}
    found = located(post(api, f"/api/runs/{run.pk}/rollouts", body))

    assert says in found[("body", "payload", "items", 1, *loc)]
    assert not Rollout.objects.exists()


def test_a_nul_in_a_rewards_key_is_422_naming_it(api, run):
    body = {"step": 1, "items": [rollout(rewards={f"acc{NUL}": 1.0})]}
    found = located(post(api, f"/api/runs/{run.pk}/rollouts", body))

    assert [message for loc, message in found.items()
            if loc[:5] == ("body", "payload", "items", 0, "rewards") and "NUL" in message]
    assert not Rollout.objects.exists()


EXPERIMENTS = [
    ({"name": f"grpo{NUL}"}, ("name",), "NUL"),
    ({"name": "grpo", "description": f"a {SURROGATE}"}, ("description",), "lone surrogate"),
    ({"name": "grpo", "config": {"learning_rate": NAN}}, ("config",),
     "learning_rate is NaN"),
    ({"name": "grpo", "config": {"dataset": f"x{NUL}"}}, ("config",), "NUL"),
]


@pytest.mark.parametrize(("body", "loc", "says"), EXPERIMENTS)
def test_an_experiment_rlab_cannot_store_is_422_naming_the_field(api, project, body, loc, says):
    found = located(post(api, f"/api/projects/{project.pk}/experiments", body))

    assert says in found[("body", "payload", *loc)]
    assert not Experiment.objects.exists()


TRACKED_RUNS = [
    ({"experiment": f"script{NUL}"}, ("experiment",)),
    ({"experiment": "script", "name": f"lr{NUL}"}, ("name",)),
    ({"experiment": "script", "tags": {"stage": f"a{SURROGATE}"}}, ("tags", "stage")),
    ({"experiment": "script", "client_key": NUL}, ("client_key",)),
]


@pytest.mark.parametrize(("body", "loc"), TRACKED_RUNS)
def test_a_tracked_run_rlab_cannot_store_is_422_naming_the_field(api, project, body, loc):
    found = located(post(api, f"/api/projects/{project.pk}/tracked-runs", body))

    assert "rlab cannot store it" in found[("body", "payload", *loc)]
    assert not Run.objects.exists()


@pytest.mark.parametrize("params", [{f"lr{NUL}": 1}, {"lr": f"0.1{NUL}"}])
def test_parameters_rlab_cannot_store_are_422(api, tracked, params):
    found = located(post(api, f"/api/runs/{tracked.pk}/params", {"params": params}))

    assert any(loc[:3] == ("body", "payload", "params") and "NUL" in message
               for loc, message in found.items())
    tracked.refresh_from_db()
    assert tracked.config == {"lr": "0.1"}


def test_an_evaluation_of_a_model_named_with_a_nul_is_422(api, project, user):
    evaluation = experiment_create(project=project, author=user, name="held-out",
                                   description="", config={}, kind="evaluation")
    found = located(post(api, f"/api/experiments/{evaluation.pk}/runs", {"model": f"m{NUL}"}))

    assert "NUL" in found[("body", "payload", "model")]
    assert not evaluation.runs.exists()


@pytest.mark.parametrize("endpoint", ["rollouts", "metrics"])
def test_json_nested_100k_deep_is_400(api, run, endpoint):
    response = post(api, f"/api/runs/{run.pk}/{endpoint}", DEEP)

    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]


def test_a_body_that_is_not_json_says_where(api, project):
    response = post(api, f"/api/projects/{project.pk}/experiments", '{"name": "x",}')

    assert response.status_code == 400
    assert response.json()["detail"] == ("The body is not JSON: Expecting property name "
                                         "enclosed in double quotes at line 1, column 14.")


def test_a_lone_surrogate_in_a_metric_batch_is_400_saying_so(api, run):
    body = json.dumps({"points": [{"key": f"loss{SURROGATE}", "step": 1, "value": 1.0}]})
    response = post(api, f"/api/runs/{run.pk}/metrics", body)

    assert response.status_code == 400
    assert "surrogate pair" in response.json()["detail"]
    assert not MetricPoint.objects.exists()


@pytest.mark.parametrize("query", ["?prompt_id=%00", "?prompt_id=%ED%A0%80", "?%00=1"])
def test_a_query_parameter_rlab_cannot_store_is_400_naming_it(api, run, query):
    response = api.get(f"/api/runs/{run.pk}/rollouts{query}")

    assert response.status_code == 400
    assert response.json()["detail"].startswith(("The query parameter 'prompt_id'", "A query",
                                                 "The query string"))


def test_a_nul_in_the_metric_keys_asked_for_is_400(api, run):
    response = api.get(f"/api/runs/{run.pk}/metrics?keys=loss%00")

    assert response.status_code == 400
    assert "'keys'" in response.json()["detail"]


def test_a_parameter_given_twice_is_422_rather_than_one_taken(api, run):
    found = located(api.get(f"/api/runs/{run.pk}/rollouts?limit=5&limit=500"))

    assert found[("query", "limit")] == "Given 2 times: give it once."


def test_a_list_parameter_may_be_given_twice(api, run):
    response = api.get(f"/api/runs/{run.pk}/metrics?keys=a&keys=b")

    assert response.status_code == 200


# The MLflow-compatible endpoints ------------------------------------------------------------------

MLFLOW = "/mlflow/{project}/api/2.0/mlflow/"


def mlflow_post(api: Client, tracked: Run, path: str, body) -> object:
    body = body if isinstance(body, str) else json.dumps(
        {"run_id": str(tracked.pk), **body})
    return api.post(MLFLOW.format(project=tracked.experiment.project_id) + path, body,
                    content_type="application/json")


def refused(response, field: str) -> str:
    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    message = response.json()["message"]
    assert f"'{field}'" in message
    return message


POINT = {"key": "loss", "value": 1.0, "timestamp": 1_700_000_000_000, "step": 1}
MLFLOW_CASES = [
    ("runs/log-metric", {**POINT, "key": f"loss{NUL}"}, "key", "NUL"),
    ("runs/log-metric", {**POINT, "step": 2**63}, "step", "less than or equal"),
    ("runs/log-metric", {**POINT, "step": -(2**63) - 1}, "step", "greater than or equal"),
    ("runs/log-metric", {**POINT, "timestamp": 10**20}, "timestamp", "milliseconds"),
    ("runs/log-metric", {**POINT, "value": True}, "value", "number"),
    ("runs/log-batch", {"metrics": [POINT, {**POINT, "step": 2**63}]}, "metrics[1].step",
     "less than"),
    ("runs/log-batch", {"metrics": [POINT], "params": [{"key": NUL, "value": "1"}]},
     "params[0].key", "NUL"),
    ("runs/log-batch", {"metrics": 5}, "metrics", "list"),
    ("runs/log-batch", {"metrics": [POINT], "tags": [{"key": "t", "value": SURROGATE}]},
     "tags[0].value", "lone surrogate"),
    ("runs/log-parameter", {"key": "lr", "value": f"0.1{NUL}"}, "value", "NUL"),
    ("runs/set-tag", {"key": f"stage{NUL}", "value": "a"}, "key", "NUL"),
    ("runs/update", {"run_name": f"b{NUL}"}, "run_name", "NUL"),
    ("runs/create", {"experiment_id": "0", "run_name": NUL}, "run_name", "NUL"),
    ("runs/create", {"experiment_id": "0", "tags": [{"key": NUL}]}, "tags[0].key", "NUL"),
    ("experiments/create", {"name": f"sweep{NUL}"}, "name", "NUL"),
]


@pytest.mark.parametrize(("path", "body", "field", "says"), MLFLOW_CASES,
                         ids=[f"{path}-{field}" for path, _, field, _ in MLFLOW_CASES])
def test_an_mlflow_call_rlab_cannot_store_is_400_naming_the_field(api, tracked, path, body,
                                                                  field, says):
    runs = Run.objects.count()
    message = refused(mlflow_post(api, tracked, path, body), field)

    assert says in message
    assert not MetricPoint.objects.exists()
    assert Run.objects.count() == runs
    tracked.refresh_from_db()
    assert (tracked.name, tracked.config, tracked.tracked_tags) == ("", {"lr": "0.1"}, {})
    assert Experiment.objects.count() == 1


def test_an_mlflow_query_parameter_with_a_nul_is_400_in_mlflows_words(api, project):
    response = api.get(MLFLOW.format(project=project.pk) + "experiments/get-by-name",
                       {"experiment_name": f"sweep{NUL}"})

    refused(response, "experiment_name")


def test_an_mlflow_body_nested_100k_deep_is_400(api, tracked):
    response = mlflow_post(api, tracked, "runs/log-batch", DEEP)

    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"
    assert "nested too deeply" in response.json()["message"]


@pytest.mark.parametrize("run_id", ["²", "१२", "-1", "1e3", str(2**70)])
def test_an_mlflow_run_id_that_is_no_id_is_not_found(api, tracked, run_id):
    response = api.get(MLFLOW.format(project=tracked.experiment.project_id) + "runs/get",
                       {"run_id": run_id})

    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_metric_values_may_be_nan_or_infinite_as_in_mlflow(api, tracked):
    # MLflow's client writes them as strings; other JSON encoders write them bare.
    body = {"metrics": [{**POINT, "step": 1, "value": "NaN"}, {**POINT, "step": 2, "value": INF},
                        {**POINT, "step": 3, "value": "-Infinity"}, {**POINT, "step": 4}]}
    response = mlflow_post(api, tracked, "runs/log-batch", body)

    assert response.status_code == 200, response.content
    values = list(MetricPoint.objects.filter(run=tracked).order_by("step")
                  .values_list("value", flat=True))
    assert math.isnan(values[0]) and values[1:] == [INF, -INF, 1.0]


# The pages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/runs/{run}/prompts/%00/",
    "/runs/{run}/rollouts/?q=%00",
    "/runs/{run}/rollouts/?q=%C3%28",
    "/projects/{project}/compare/?runs=%00",
])
def test_a_page_address_rlab_cannot_store_is_a_400_page(signed_in, run, project, path):
    response = signed_in.get(path.format(run=run.pk, project=project.pk))

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"Bad request" in response.content


def test_the_400_page_names_the_parameter(signed_in, run):
    response = signed_in.get(f"/runs/{run.pk}/rollouts/?q=a%00b")

    assert "The query parameter &#x27;q&#x27; contains a NUL character" in response.content.decode()


def test_a_form_field_with_a_nul_is_400_and_changes_nothing(signed_in, run):
    response = signed_in.post(f"/runs/{run.pk}/notes/", urlencode({"notes": f"good{NUL}run"}),
                              content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    run.refresh_from_db()
    assert run.notes == ""


def test_the_rollout_page_shows_a_token_log_prob_too_large_for_exp(signed_in, run):
    # Stored as a worker or an older version of the API would have stored it.
    rollouts_ingest(run_id=run.pk, step=1, items=[rollout(tokens={
        "text": ["2", "!"], "logprob": [800.0, -0.1]})])
    stored = Rollout.objects.get()

    response = signed_in.get(f"/rollouts/{stored.pk}/")

    assert response.status_code == 200
    assert b"800" in response.content


# Through the ASGI server -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    """The ASGI server as production runs it: it keeps the address's raw bytes, which Django's
    test client (WSGI) writes back as escapes."""
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


# A quoted cookie value may escape characters in octal: \000 is a NUL.
NUL_SESSION = {"Cookie": 'sessionid="abc\\000defghijk"'}


@pytest.mark.parametrize(("path", "headers", "says"), [
    ("/runs/1/prompts/%FF%FE/", {}, b"not UTF-8"),
    ("/runs/1/prompts/%00/", {}, b"NUL"),
    ("/runs/1/rollouts/?q=%C3%28", {}, b"not UTF-8"),
    ("/projects/", NUL_SESSION, b"cookie &#x27;sessionid&#x27; contains a NUL"),
    ("/api/runs/1/rollouts?prompt_id=%00", {}, b"'prompt_id' contains a NUL"),
    ("/mlflow/1/api/2.0/mlflow/runs/get?run_id=%00", {}, b"INVALID_PARAMETER_VALUE"),
])
def test_the_server_refuses_an_address_or_cookie_rlab_cannot_store(web, path, headers, says):
    response = requests.get(web + path, headers=headers, timeout=10, allow_redirects=False)

    assert response.status_code == 400
    assert says in response.content


# The worker's own writes --------------------------------------------------------------------------

def test_a_nul_a_model_generates_is_stored_as_a_replacement_and_the_run_goes_on(run):
    """What the training process prints (JSON lines, as training/spec/events.py writes them) goes
    through the supervisor's reading and batching into the database."""
    events = [
        {"kind": "metrics", "step": 1, "time": 1_700_000_000.0,
         "values": {"reward/mean": 0.5, f"odd{NUL}key": 1.0}},
        {"kind": "rollouts", "step": 1, "items": [rollout(
            prompt=f"1+1 {SURROGATE}", completion=f"2{NUL}", prompt_id=f"p{NUL}",
            rewards={f"acc{NUL}": 1.0}, extra={"judge": NAN, "why": f"x{NUL}"},
            tokens={"text": ["2", NUL], "logprob": [-0.1, NAN]})]},
        {"kind": "log", "level": "info", "message": f"sampled 2{NUL}"},
        {"kind": "progress", "step": 1, "total_steps": 3},
    ]
    supervisor = RunSupervisor(run_id=run.pk, config=run.config, created_at=run.created_at)
    supervisor._read_events(io.StringIO("".join(json.dumps(event) + "\n" for event in events)))
    supervisor._read_stderr(io.StringIO(f"warning: odd byte {NUL} in output\n"))
    while not supervisor.events.empty():
        event = supervisor.events.get_nowait()
        if event is not None:  # the end of the training process's output
            supervisor._take(event)

    assert supervisor._flush()

    stored = Rollout.objects.get(run=run)
    assert (stored.prompt, stored.completion, stored.prompt_id) == ("1+1 \ufffd", "2\ufffd",
                                                                    "p\ufffd")
    assert stored.rewards == {"acc\ufffd": 1.0}
    assert stored.extra == {"judge": None, "why": "x\ufffd"}
    assert stored.token_data == {"text": ["2", "\ufffd"], "logprob": [-0.1, None]}
    assert dict(MetricPoint.objects.filter(run=run).values_list("key", "value")) == {
        "reward/mean": 0.5, "odd\ufffdkey": 1.0}
    assert set(LogLine.objects.filter(run=run).values_list("message", flat=True)) == {
        "sampled 2\ufffd", "warning: odd byte \ufffd in output"}
    run.refresh_from_db()
    assert run.progress_step == 1
