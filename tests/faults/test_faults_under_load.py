"""Faults under load: rlab in full mode (uvicorn, a real Celery worker, Postgres, and a Redis of
the test's own as the broker) while SDK scripts log and a run page streams, through one of each
fault in turn:

    kill -9 of the web server, started again on the same port
    kill -9 of a training process
    kill -9 of the worker (its processes; the training process dies with them), and a new worker
    of the same name, whose housekeeping marks the run it left interrupted
    a restart of the broker, which keeps nothing, while a resumed run waits in its queue
    a restart of Postgres (the shared server: a few seconds), while the other resumed run trains

Then every point and rollout the scripts logged is stored once, the run page received every
step once, every run has ended in the state that says what happened to it, and each run that a
fault killed resumes from its checkpoint and succeeds.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import DatabaseError, connection

import rlab
from tests.conftest import tiny_run_config
from tests.stack import (
    WebSession,
    free_port,
    start_redis,
    start_web,
    start_worker,
    training_processes,
)
from webapp.api.tokens import token_create
from webapp.experiments.services import experiment_create
from webapp.runs.models import TERMINAL_STATUSES, MetricPoint, Rollout, Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEYS = [f"train/metric_{k}" for k in range(10)]
ROLLOUTS_PER_STEP = 4
SCRIPTS = 3
# Neither run may end before its fault reaches it: the first is killed after its second
# checkpoint, which the test waits for only after restarting the web server (about 6 s), and,
# resumed, must still train when the broker restarts, so that the second, resumed too, waits in
# the queue then. A tiny-model step takes 0.3 to 1 s, so 12 steps could all be done by then.
STEPS = {"first": 60, "second": 30}
WORKER_ENV = {"RLAB_HOUSEKEEPING_SECONDS": "1", "RLAB_REQUEUE_AFTER_SECONDS": "10"}


class Script(threading.Thread):
    """A training script logging a tracked run through the SDK (its batching thread, spool and
    retries): each step, every key of KEYS and a group of rollouts, every 0.2 s until stopped;
    then finish(), which waits for the spool to be delivered."""

    def __init__(self, *, base_url: str, token: str, project_id: int, spool: Path, number: int):
        super().__init__(name=f"script-{number}", daemon=True)
        self.tracked = rlab.init(project=project_id, experiment="scripts", name=f"script {number}",
                                 url=base_url, token=token, spool_dir=spool, flush_interval=0.5,
                                 retry_max_delay=2.0)
        self.steps = 0
        self.delivered: bool | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.2):
            step = self.steps
            self.tracked.log({key: step + k / 100 for k, key in enumerate(KEYS)}, step=step)
            self.tracked.log_rollouts([
                {"prompt": f"Compute {step} + {i}.", "completion": f"The answer is {step + i}.",
                 "reward": float(i % 2), "group": 0, "sample_index": i}
                for i in range(ROLLOUTS_PER_STEP)], step=step)
            self.steps += 1
        self.delivered = self.tracked.finish(timeout=180)


class Watcher(threading.Thread):
    """A run page's event stream as a browser's EventSource reads it: from the run's first
    point, and again after the last event id received whenever the stream breaks, until the
    stream's `end`. Records the steps of KEYS[0] that `metrics` events bring."""

    def __init__(self, *, base_url: str, run_id: int, cookie: str):
        super().__init__(name="watcher", daemon=True)
        parts = urlsplit(base_url)
        self.address = (parts.hostname, parts.port)
        self.path = f"/runs/{run_id}/events/"
        self.cookie = cookie
        self.steps: list[int] = []
        self.reconnects = 0
        self.ended = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        last_id = "0.0.0.0"
        while not (self.ended.is_set() or self.halt.is_set()):
            stream = http.client.HTTPConnection(*self.address, timeout=30)
            try:
                stream.request("GET", self.path, headers={
                    "Cookie": self.cookie, "Accept": "text/event-stream",
                    "Last-Event-ID": last_id})
                response = stream.getresponse()
                buffer = b""
                while response.status == 200 and not self.halt.is_set():
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    *blocks, buffer = (buffer + chunk).split(b"\n\n")
                    for block in blocks:
                        last_id = self._take(block) or last_id
            except (OSError, http.client.HTTPException):
                pass  # the server went away: reconnect, as a browser does
            finally:
                stream.close()
            if not self.ended.is_set():
                self.reconnects += 1
                time.sleep(0.5)

    def _take(self, block: bytes) -> str | None:
        fields = dict(line.split(": ", 1) for line in block.decode().split("\n")
                      if ": " in line and not line.startswith(":"))
        if fields.get("event") == "metrics":
            self.steps.extend(json.loads(fields["data"])["series"].get(KEYS[0], [[]])[0])
        elif fields.get("event") == "end":
            self.ended.set()
        return fields.get("id")


def _wait(what: str, predicate, timeout: float, *logs) -> None:
    """Poll `predicate` (database reads, which fail while Postgres restarts) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except DatabaseError:
            connection.close()
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n" + "\n".join(
        process.output()[-3000:] for process in logs))


def _run(pk: int) -> Run:
    return Run.objects.get(pk=pk)


def _checkpointed(run_id: int, step: int):
    return lambda: _run(run_id).checkpoints.filter(step__gte=step).exists()


def _restart_postgres() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    connection.close()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
                    "-m", "fast"], check=True, capture_output=True, timeout=60)
    connection.close()


def _resume(session: WebSession, run: Run) -> Run:
    """Resume through the run page's button (services.run_resume), so that the web server sends
    the new run to its broker."""
    status, page, _ = session.post(f"/runs/{run.pk}/resume/")
    assert status == 200, page[-2000:]
    return Run.objects.get(resumed_from__run=run)


def test_faults_under_load_lose_no_point_and_leave_every_run_in_a_true_resumable_state(
        tmp_path, project, user, client, tiny_model):
    broker_port, web_port = free_port(), free_port()
    broker_url = f"redis://127.0.0.1:{broker_port}/0"
    env = {"CELERY_BROKER_URL": broker_url, "RLAB_RUN_DIR": str(tmp_path / "runs")}
    processes = {"broker": start_redis(tmp_path, broker_port)}
    threads: list[Script | Watcher] = []
    try:
        processes["web"], base_url = start_web(tmp_path, port=web_port, **env)
        processes["worker"] = start_worker(tmp_path, **env, **WORKER_ENV)
        session = WebSession(base_url, user)
        client.force_login(user)
        token = token_create(user=user, name="scripts")[1]
        trained = {}
        for name, steps in STEPS.items():
            experiment = experiment_create(
                project=project, author=user, name=name, description="",
                config=tiny_run_config(tiny_model, max_steps=steps, checkpoint_every=1))
            assert session.post(f"/experiments/{experiment.pk}/launch/")[0] == 200
            trained[name] = Run.objects.get(experiment=experiment)
        scripts = [Script(base_url=base_url, token=token, project_id=project.pk,
                          spool=tmp_path / "spool", number=i) for i in range(SCRIPTS)]
        watcher = Watcher(base_url=base_url, run_id=scripts[0].tracked.id,
                          cookie=f"{settings.SESSION_COOKIE_NAME}="
                                 f"{client.cookies[settings.SESSION_COOKIE_NAME].value}")
        threads = [*scripts, watcher]
        for thread in threads:
            thread.start()
        first, second = trained["first"], trained["second"]

        # The web server, killed and started again on its port while the scripts log.
        time.sleep(3)
        processes["web"].kill()
        time.sleep(2)
        processes["web"].stop()
        processes["web"], _ = start_web(tmp_path, port=web_port, name="web-2", **env)

        # A training process, killed after its second checkpoint: the run fails, saying so.
        _wait("the first run's second checkpoint", _checkpointed(first.pk, 2), 180,
              processes["worker"])
        for pid in training_processes(first.pk):
            os.kill(pid, signal.SIGKILL)
        _wait("the first run failed", lambda: _run(first.pk).is_terminal, 60, processes["worker"])

        # The worker, killed while the second run trains; a new one of the same name finds the
        # run it left behind.
        _wait("the second run's second checkpoint", _checkpointed(second.pk, 2), 180,
              processes["worker"])
        processes["worker"].kill()
        processes["worker"].stop()
        processes["worker"] = start_worker(tmp_path, name="worker-2", **env, **WORKER_ENV)
        _wait("the second run interrupted", lambda: _run(second.pk).is_terminal, 60,
              processes["worker"])

        # Both resumed: the second waits in the broker's queue while the first trains. The broker
        # restarts empty, then Postgres restarts.
        resumed_first = _resume(session, _run(first.pk))
        resumed_second = _resume(session, _run(second.pk))
        _wait("the resumed first run training", lambda: _run(resumed_first.pk).progress_step
              > resumed_first.resumed_from.step, 180, processes["worker"])
        assert _run(resumed_second.pk).status == RunStatus.QUEUED
        processes["broker"].kill()
        processes["broker"].stop()
        processes["broker"] = start_redis(tmp_path, broker_port)
        _restart_postgres()

        for run in (resumed_first, resumed_second):
            _wait(f"run {run.pk} ended", lambda run=run: _run(run.pk).is_terminal, 240,
                  processes["worker"])
        for script in scripts:
            script.halt.set()
        for script in scripts:
            script.join(timeout=200)
        watcher.ended.wait(timeout=30)

        # Every point and rollout logged, stored once; the page got every step once.
        for script in scripts:
            assert script.delivered, f"script {script.tracked.id} kept batches in its spool"
            run = _run(script.tracked.id)
            assert run.status == RunStatus.SUCCEEDED
            stored = set(MetricPoint.objects.filter(run=run).values_list("key", "step"))
            assert stored == {(key, step) for key in KEYS for step in range(script.steps)}
            assert MetricPoint.objects.filter(run=run).count() == len(KEYS) * script.steps
            assert Rollout.objects.filter(run=run).count() == ROLLOUTS_PER_STEP * script.steps
        assert watcher.ended.is_set(), "the run page's stream never ended"
        assert watcher.steps == list(range(scripts[0].steps)), (
            f"the page got steps {watcher.steps} after {watcher.reconnects} reconnects")
        assert watcher.reconnects >= 1, "the web server's restart should have cut the stream"

        # Every run ended as what happened to it says, and each killed one resumed.
        assert not Run.objects.exclude(status__in=TERMINAL_STATUSES).exists()
        first, second = _run(first.pk), _run(second.pk)
        assert first.status == RunStatus.FAILED
        assert "killed by SIGKILL" in first.error_message
        assert second.status == RunStatus.INTERRUPTED
        assert "was stopped without shutting down" in second.error_message
        for killed, resumed in ((first, resumed_first), (second, resumed_second)):
            resumed = _run(resumed.pk)
            assert resumed.status == RunStatus.SUCCEEDED, resumed.error_message
            assert resumed.resumed_from.run == killed
            start = resumed.resumed_from.step + 1
            steps = sorted(MetricPoint.objects.filter(run=resumed, key="reward/mean")
                           .values_list("step", flat=True))
            assert steps == list(range(start, killed.config["max_steps"] + 1))
            assert Rollout.objects.filter(run=resumed).count() == 4 * len(steps)
        assert (f"queued runs sent to the broker again: {resumed_second.pk}\n"
                in processes["worker"].output())
    finally:
        for thread in threads:
            thread.halt.set()
        for process in reversed(processes.values()):
            process.stop()
