"""The users of `make bench-load` (benchmarks.bench_load), for locust: it runs this file in a
process of its own (gevent), never imported by rlab. Their settings come from the JSON file
named by RLAB_LOAD_CONFIG, which bench_load writes; what they measured goes to the file its
`result` names, when locust quits.

    Writer     a script logging a tracked run through the API with a token: each second, one
               step of `metrics` metrics (its wall time is now) and one batch of rollouts
    Reader     a run page in a browser: the page, its chart data, then the event stream held
               open for about `watch_seconds`, then the page again. Every `metrics` event's
               delay is its arrival time minus the wall time the writer logged its points at
               (both clocks are this machine's)
    ApiReader  a script reading run lists, metric series, rollouts and a run, once a second
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from locust import FastHttpUser, HttpUser, constant, constant_pacing, events, task

CONFIG = json.loads(Path(os.environ["RLAB_LOAD_CONFIG"]).read_text())
RUNS: list[int] = CONFIG["runs"]
KEYS = ["train/loss", "reward/mean"] + [f"train/metric_{k:02d}"
                                        for k in range(CONFIG["metrics"] - 2)]
STREAM_CURSOR = re.compile(r"last_event_id=([0-9.]+)")
STREAM_FAILURE = "SSE"  # a failure that is no request of its own: a stream broke or lost events
RETRY_SECONDS = 2  # what the run page waits before it opens its stream again after an error

# What every user did, read when locust quits (one process: no locking needed under gevent).
requests: list[tuple[str, float, bool]] = []  # (name, milliseconds, succeeded)
errors: Counter[tuple[str, str]] = Counter()  # (name, error) → occurrences, streams' included
delays: list[float] = []  # seconds from a point's wall time to its event's arrival
sent = {"points": Counter(), "rollouts": Counter()}  # run id → items in a request sent
acknowledged = {"points": Counter(), "rollouts": Counter()}  # ... answered 200
_writer_numbers = itertools.count()
_reader_numbers = itertools.count()


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float,
            exception: BaseException | None, **_) -> None:
    if request_type != STREAM_FAILURE:
        requests.append((name, response_time, exception is None))
    if exception is not None:
        errors[(name, _describe(exception))] += 1


def _describe(exception: BaseException) -> str:
    """An HTTP error by its status (its message names the URL, so each run's would count as a
    kind of its own); anything else by its type and message."""
    response = getattr(exception, "response", None)
    status = getattr(exception, "code", None) or getattr(response, "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    return f"{type(exception).__name__}: {str(exception)[:200]}"


def _fail(name: str, exception: BaseException) -> None:
    events.request.fire(request_type=STREAM_FAILURE, name=name, response_time=0,
                        response_length=0, exception=exception)


# When every user had started and when they were told to stop: bench_load measures CPU over that
# time, and learns its ends from these files.
window: dict[str, float] = {}


@events.spawning_complete.add_listener
def _started(**_) -> None:
    window["start"] = time.time()
    open(f"{CONFIG['result']}.started", "w").close()


@events.test_stopping.add_listener
def _stopping(**_) -> None:
    window["stop"] = time.time()
    open(f"{CONFIG['result']}.stopping", "w").close()


@events.quitting.add_listener
def _write_result(environment, **_) -> None:
    with open(CONFIG["result"], "w") as file:
        json.dump({"window": window, "requests": requests,
                   "errors": [[*key, count] for key, count in errors.items()],
                   "delays": delays,
                   "sent": {kind: dict(counts) for kind, counts in sent.items()},
                   "acknowledged": {kind: dict(counts) for kind, counts in acknowledged.items()}},
                  file)


def _start_at_a_random_moment(within: float = 1.0) -> None:
    """Wait up to `within` seconds before the first request. locust starts every user at once:
    users paced to once a second would all send in the same few milliseconds of each second for
    the whole run, and 50 pages would all load at once, while independent training scripts and
    people are not in step. The bench measures the steady state instead."""
    time.sleep(random.uniform(0.0, within))  # gevent's sleep: locust patches time


class Writer(FastHttpUser):
    fixed_count = CONFIG["writers"]
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        self.run_id = RUNS[next(_writer_numbers) % len(RUNS)]
        self.step = 0
        _start_at_a_random_moment()
        self.headers = {"Authorization": f"Bearer {CONFIG['token']}",
                        "Content-Type": "application/json"}

    @task
    def log_step(self) -> None:
        step, self.step = self.step, self.step + 1
        now = time.time()
        metrics = json.dumps({"series": [
            {"key": key, "steps": [step], "values": [1.0 / (step + 1) + k * 0.001],
             "times": [now]} for k, key in enumerate(KEYS)]}).encode()
        self._post("metrics", metrics, "points", len(KEYS))
        items = [{"prompt": f"Compute {step % 97} + {group}. Give the final answer as a number.",
                  "completion": f"Let me add them: {step % 97} + {group} = {step % 97 + group}. "
                                f"The answer is {step % 97 + group + sample % 2}." * 3,
                  "reward": float(sample % 2 == 0), "rewards": {"correct": float(sample % 2 == 0)},
                  "advantage": 0.5 - sample % 2, "group": group, "sample_index": sample,
                  "prompt_id": f"p{step % 97}-{group}", "completion_tokens": 40 + sample}
                 for group in range(CONFIG["rollout_groups"])
                 for sample in range(CONFIG["group_size"])]
        self._post("rollouts", json.dumps({"step": step, "items": items}).encode(), "rollouts",
                   len(items))

    def _post(self, endpoint: str, body: bytes, kind: str, count: int) -> None:
        response = self.client.post(f"/api/runs/{self.run_id}/{endpoint}", data=body,
                                    headers=self.headers, name=f"api write: {endpoint}")
        # Counted once answered, whatever the answer: a request still under way when locust
        # stops its users was never sent whole, and the server cannot be asked to store it.
        sent[kind][self.run_id] += count
        if response.status_code == 200:
            acknowledged[kind][self.run_id] += count


class Reader(HttpUser):
    fixed_count = CONFIG["readers"]
    wait_time = constant(0)

    def on_start(self) -> None:
        self.run_id = RUNS[next(_reader_numbers) % len(RUNS)]
        self.client.headers["Cookie"] = CONFIG["cookie"]
        _start_at_a_random_moment(within=CONFIG["watch_seconds"])  # as a page opens later

    @task
    def open_page(self) -> None:
        page = self.client.get(f"/runs/{self.run_id}/", name="page: run")
        self.client.get(f"/runs/{self.run_id}/metrics.json", name="page: run charts")
        cursor = STREAM_CURSOR.search(page.text or "")
        if page.status_code != 200 or cursor is None:
            if page.status_code == 200:
                _fail("events: stream", RuntimeError("the run page has no live stream"))
            time.sleep(RETRY_SECONDS)
        elif not self._watch(cursor.group(1),
                             CONFIG["watch_seconds"] * random.uniform(0.5, 1.5)):
            time.sleep(RETRY_SECONDS)

    def _watch(self, cursor: str, seconds: float) -> bool:
        """The page's event stream from its cursor for `seconds`, as the browser reads it; False
        if it failed before then."""
        response = self.client.get(f"/runs/{self.run_id}/events/?last_event_id={cursor}",
                                   name="events: connect", stream=True,
                                   headers={"Accept": "text/event-stream"})
        if response.status_code != 200:
            return False
        deadline = time.monotonic() + seconds
        last_step: int | None = None
        buffer = b""
        try:
            for chunk in response.iter_content(chunk_size=None):
                arrived = time.time()
                buffer += chunk
                *complete, buffer = buffer.split(b"\n\n")
                for block in complete:
                    name, data = _parse(block)
                    if name == "end":
                        raise RuntimeError("the stream ended, yet the run is running")
                    if name == "metrics":
                        last_step = self._measure(json.loads(data), arrived, last_step)
                if time.monotonic() > deadline:
                    return True
            raise RuntimeError("the server closed the stream")
        except Exception as exc:  # noqa: BLE001 - any way a stream breaks is an error to count
            _fail("events: stream", exc)
            return False
        finally:
            response.close()

    @staticmethod
    def _measure(payload: dict, arrived: float, last_step: int | None) -> int | None:
        """Record the delay of each step's points in a metrics event; a step missing since the
        last one received, or received again, is an error."""
        steps, _, walls = payload["series"].get(KEYS[0], ([], [], []))
        for step, wall in zip(steps, walls, strict=True):
            delays.append(arrived - wall)
            if last_step is not None and step != last_step + 1:
                _fail("events: lost", RuntimeError("a step missing, or received twice"))
            last_step = step
        return last_step


def _parse(block: bytes) -> tuple[str, str]:
    """An event's name and data (its data lines joined with LF, as a browser joins them)."""
    name, data = "message", []
    for line in block.decode().split("\n"):
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return name, "\n".join(data)


class ApiReader(FastHttpUser):
    fixed_count = CONFIG["api_readers"]
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {CONFIG['token']}"}
        _start_at_a_random_moment()

    def _get(self, path: str, name: str) -> None:
        self.client.get(path, headers=self.headers, name=f"api read: {name}")

    @task(2)
    def run_list(self) -> None:
        self._get(f"/api/runs?project={CONFIG['project']}&limit=20", "run list")

    @task(3)
    def metric_series(self) -> None:
        self._get(f"/api/runs/{random.choice(RUNS)}/metrics", "metrics")

    @task(1)
    def rollouts(self) -> None:
        self._get(f"/api/runs/{random.choice(RUNS)}/rollouts?limit=50", "rollouts")

    @task(1)
    def run_detail(self) -> None:
        self._get(f"/api/runs/{random.choice(RUNS)}", "run")
