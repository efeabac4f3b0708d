"""What the SDK batches and spools while no server answers: log() returns at once, points are
grouped per key into columns, and everything, the run's end last, waits in the spool."""

from __future__ import annotations

import json
import time

import pytest

import rlab
from rlab.run import metric_batches
from tests.stack import free_port


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)


def batches(run, resume: bool = False) -> list[tuple[str, dict]]:
    """The spooled batches, in order; the resume that starts the spool of every run here (they
    are made with resume_run_id) only if `resume`."""
    found = [(path.name.split(".")[1], json.loads(path.read_bytes()))
             for path in sorted(run.spool_dir.glob("*.json"))]
    return found if resume else [batch for batch in found if batch[0] != "resume"]


@pytest.fixture
def offline_run(tmp_path):
    """A run whose server never answers (nothing listens on its port)."""
    made = []

    def make(**options):
        run = rlab.init(resume_run_id=41, url=f"http://127.0.0.1:{free_port()}", token="rlab_x_y",
                        spool_dir=tmp_path, **options)
        made.append(run)
        return run

    yield make
    for run in made:
        run.finish(timeout=0)


def test_points_are_grouped_per_key_into_columns():
    buffered = {"loss": {0: (0.5, 10.0), 1: (0.4, 11.0)}, "reward/mean": {1: (0.25, 11.0)}}

    [body] = list(metric_batches(buffered))

    assert json.loads(body) == {"series": [
        {"key": "loss", "steps": [0, 1], "values": [0.5, 0.4], "times": [10.0, 11.0]},
        {"key": "reward/mean", "steps": [1], "values": [0.25], "times": [11.0]}]}


def test_a_batch_holds_at_most_the_limit_of_points():
    buffered = {"a": {step: (1.0, 0.0) for step in range(7)},
                "b": {step: (2.0, 0.0) for step in range(3)}}

    bodies = [json.loads(body) for body in metric_batches(buffered, limit=4)]

    sizes = [[(s["key"], len(s["steps"])) for s in body["series"]] for body in bodies]
    assert sizes == [[("a", 4)], [("a", 3)], [("b", 3)]]


def test_a_full_buffer_is_spooled_without_waiting_for_the_interval(offline_run):
    run = offline_run(flush_interval=3600, flush_points=10)

    for step in range(10):
        run.log({"loss": 1.0 / (step + 1)}, step=step)

    wait_until(lambda: batches(run))
    [(kind, body)] = batches(run)
    assert kind == "metrics"
    assert body["series"][0]["steps"] == list(range(10))
    assert body["series"][0]["values"] == [1.0 / (step + 1) for step in range(10)]


def test_log_without_a_step_counts_on_from_the_last_step(offline_run):
    run = offline_run(flush_interval=3600)

    run.log({"a": 1})
    run.log({"a": 2})
    run.log({"a": 3}, step=10)
    run.log({"a": 4})
    run.log({"a": 5, "b": 6}, step=5)
    run.finish(timeout=0)

    series = {s["key"]: dict(zip(s["steps"], s["values"]))
              for kind, body in batches(run) if kind == "metrics" for s in body["series"]}
    assert series == {"a": {0: 1.0, 1: 2.0, 10: 3.0, 11: 4.0, 5: 5.0}, "b": {5: 6.0}}


def test_a_step_logged_twice_keeps_its_latest_value_as_the_server_does(offline_run):
    run = offline_run(flush_interval=3600)

    run.log({"a": 1}, step=3)
    run.log({"a": 2, "b": 1}, step=3)
    run.finish(timeout=0)

    [series_a, series_b] = batches(run)[0][1]["series"]
    assert (series_a["steps"], series_a["values"]) == ([3], [2.0])
    assert series_a["times"][0] == series_b["times"][0], "the time of the latest"


def test_batches_reach_the_spool_every_interval_while_the_server_is_away(offline_run):
    run = offline_run(flush_interval=0.2, retry_max_delay=30)

    for step in range(20):  # 2 s: ten intervals, while the uploads back off to 2 s and more
        run.log({"loss": step / 10}, step=step)
        time.sleep(0.1)
    spooled = len(list(run.spool_dir.glob("*.metrics.json")))

    assert spooled >= 6, f"{spooled} batches spooled in 2 s"


def test_a_resumed_run_spools_its_resume_before_anything_it_logs(offline_run):
    run = offline_run(flush_interval=3600)

    run.log({"a": 1}, step=0)
    run.finish(timeout=0)

    assert [kind for kind, _ in batches(run, resume=True)] == ["resume", "metrics", "finish"]


def test_finish_without_a_server_leaves_everything_in_the_spool_its_end_last(offline_run):
    run = offline_run(flush_interval=3600)
    run.log({"loss": 0.3, "reward/mean": 0.5}, step=1)
    run.log_rollouts([{"prompt": "1 + 1", "completion": "2", "reward": 1.0}], step=1)
    run.log_params({"model": {"lr": 1e-6}})

    assert run.finish("failed", timeout=0) is False

    spooled = batches(run)
    for series in spooled[0][1]["series"]:
        assert series.pop("times")[0] > 1.7e9
    assert spooled == [
        ("metrics", {"series": [{"key": "loss", "steps": [1], "values": [0.3]},
                                {"key": "reward/mean", "steps": [1], "values": [0.5]}]}),
        ("rollouts", {"step": 1, "items": [{"prompt": "1 + 1", "completion": "2",
                                            "reward": 1.0}]}),
        ("params", {"params": {"model.lr": 1e-6}}),
        ("finish", {"status": "failed"})]


def test_a_finished_run_takes_no_more_data(offline_run):
    run = offline_run()
    run.finish(timeout=0)

    with pytest.raises(rlab.RlabError, match="has finished"):
        run.log({"loss": 1.0})


def test_log_refuses_what_is_not_a_number_and_skips_what_is_not_finite(offline_run, caplog):
    run = offline_run(flush_interval=3600)

    with pytest.raises(TypeError, match="'text' is not a number"):
        run.log({"loss": "text"})
    with pytest.raises(ValueError, match="Metric key ''"):
        run.log({"": 1.0})
    run.log({"loss": float("nan"), "kl": 0.1}, step=0)
    run.finish(timeout=0)

    assert [s["key"] for s in batches(run)[0][1]["series"]] == ["kl"]
    assert "loss = nan is not stored" in caplog.text


def test_rollouts_that_cannot_be_sent_fail_in_the_callers_code(offline_run):
    run = offline_run()

    with pytest.raises(ValueError):
        run.log_rollouts([{"prompt": "p", "completion": "c", "reward": float("inf")}], step=0)


def test_init_gives_up_with_a_clear_error_when_the_server_never_answers(tmp_path):
    with pytest.raises(rlab.RlabError, match="did not answer for 1 s"):
        rlab.init(project=1, experiment="e", url=f"http://127.0.0.1:{free_port()}",
                  token="rlab_x_y", spool_dir=tmp_path, init_timeout=1)


def test_init_says_where_the_url_and_token_come_from(monkeypatch):
    monkeypatch.delenv("RLAB_URL", raising=False)
    monkeypatch.setenv("RLAB_TOKEN", "rlab_x_y")

    with pytest.raises(rlab.RlabError, match="RLAB_URL"):
        rlab.init(project=1, experiment="e")
