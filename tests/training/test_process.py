"""training.process as the worker runs it: a subprocess, config on stdin, events on stdout."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs the child with a trainer that first prints junk, as a chatty library would.
NOISY_CHILD = """
import os, sys
import training.loops.train
real_train = training.loops.train.train

def noisy_train(*args, **kwargs):
    print("GARBAGE from print")
    sys.stdout.flush()
    os.write(1, b"GARBAGE from fd 1\\n")
    return real_train(*args, **kwargs)

training.loops.train.train = noisy_train
from training.process import main
sys.exit(main())
"""


class Child:
    """A training child in its own process group, its stdout read line by line as events."""

    def __init__(self, request: dict | str, *, code: str | None = None):
        command = ([sys.executable, "-c", code] if code
                   else [sys.executable, "-m", "training.process"])
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.raw: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.process.stdin.write(request if isinstance(request, str) else json.dumps(request))
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_event(self, timeout: float = 60) -> dict | None:
        line = self.lines.get(timeout=timeout)
        if line is None:
            return None
        self.raw.append(line)
        return json.loads(line)

    def wait_for(self, kind: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (event := self.next_event(deadline - time.monotonic())) is not None:
            if event["kind"] == kind:
                return event
        raise AssertionError(f"no {kind!r} event; stderr:\n{self.process.stderr.read()}")

    def finish(self, timeout: float = 60) -> tuple[list[dict], int]:
        events = []
        while (event := self.next_event(timeout)) is not None:
            events.append(event)
        return events, self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def start_child():
    children: list[Child] = []

    def start(request, **kwargs) -> Child:
        children.append(Child(request, **kwargs))
        return children[-1]

    yield start
    for child in children:
        child.kill()


def _request(tiny_config, **changes):
    return {"run_id": 7, "config": {**tiny_config.to_dict(), **changes}}


def test_a_run_streams_status_metrics_and_done_on_a_clean_stdout(start_child, tiny_config):
    child = start_child(_request(tiny_config), code=NOISY_CHILD)
    events, returncode = child.finish()
    assert returncode == 0
    kinds = [e["kind"] for e in events]
    assert kinds.count("status") == 1 and kinds.count("metrics") == 2
    assert kinds[-1] == "done"
    assert not any("GARBAGE" in line for line in child.raw)
    assert "GARBAGE from print" in child.process.stderr.read()


def test_a_missing_model_gives_an_error_event_and_a_failing_exit(start_child, tiny_config,
                                                                 tmp_path):
    child = start_child(_request(tiny_config, model=str(tmp_path / "no-model-here")))
    events, returncode = child.finish()
    assert returncode != 0
    [error] = [e for e in events if e["kind"] == "error"]
    assert "no-model-here" in error["message"] and "does not exist" in error["message"]
    assert "done" not in [e["kind"] for e in events]


def test_an_invalid_config_exits_2_naming_the_field(start_child, tiny_config):
    child = start_child(_request(tiny_config, group_size=1))
    events, returncode = child.finish()
    assert returncode == 2
    assert [e["kind"] for e in events] == ["error"]
    assert "group_size" in events[0]["message"]


def test_a_request_that_is_not_json_exits_2(start_child):
    events, returncode = start_child("this is not json").finish()
    assert returncode == 2 and events[0]["kind"] == "error"


def test_sigterm_stops_the_run_within_seconds(start_child, tiny_config):
    child = start_child(_request(tiny_config, max_steps=10_000))
    child.wait_for("metrics")
    os.killpg(child.process.pid, signal.SIGTERM)
    sent = time.monotonic()
    events, returncode = child.finish(timeout=10)
    assert time.monotonic() - sent < 5
    assert returncode == 0
    kinds = [e["kind"] for e in events]
    assert "done" not in kinds and "error" not in kinds
    assert "stopped on request" in [e for e in events if e["kind"] == "log"][-1]["message"]


def test_an_evaluation_job_runs_to_done_with_its_metrics(start_child, tiny_model):
    config = {"model": str(tiny_model), "samples": 2, "pass_ks": "1, 2", "maj_ks": "2",
              "max_new_tokens": 4, "max_prompts": 3, "rollout_backend": "transformers"}
    events, returncode = start_child({"run_id": 1, "job": "evaluation", "config": config}).finish()
    assert returncode == 0
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "done" and "error" not in kinds
    [metrics] = [e for e in events if e["kind"] == "metrics"]
    assert metrics["values"]["eval/prompts"] == 3
    assert sum(len(e["items"]) for e in events if e["kind"] == "rollouts") == 3 * 2


def test_an_invalid_evaluation_config_or_job_exits_2(start_child):
    events, returncode = start_child({"job": "evaluation", "config": {"samples": 2}}).finish()
    assert returncode == 2
    assert "Invalid evaluation config" in events[0]["message"] and "pass_ks" in events[0][
        "message"]
    events, returncode = start_child({"job": "painting", "config": {}}).finish()
    assert returncode == 2 and "unknown job 'painting'" in events[0]["message"]
