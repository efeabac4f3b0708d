"""A tracked script that dies, or loses the server, loses at most one flush interval: the SDK
spools every interval whatever the network does, heartbeats so the server can tell a dead
script (its run crashes) from a quiet one, resumes a crashed run, and says what the server
refused. Scripts run in processes of their own, killed with SIGKILL, against the real ASGI
server on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

import rlab
from tests.stack import ROOT, free_port, start_web
from webapp.api.tokens import token_create
from webapp.runs.models import MetricPoint, Rollout, Run, RunStatus
from webapp.runs.tracking import (
    tracked_experiment_get_or_create,
    tracked_run_create,
    tracked_runs_crash_stale,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FLUSH_INTERVAL = 1.0


@pytest.fixture(scope="module")
def web(django_db_setup, tmp_path_factory):
    server, base_url = start_web(tmp_path_factory.mktemp("web"))
    yield base_url
    server.stop()


@pytest.fixture
def token(user) -> str:
    return token_create(user=user, name="sdk")[1]


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)


class Script:
    """A Python script using the SDK in a process of its own; its printed lines are kept."""

    def __init__(self, source: str, *args: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "client")])}
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(source), *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def kill(self) -> float:
        """SIGKILL, as the OOM killer or `kill -9` stops it; the moment it was sent."""
        killed_at = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return killed_at


LOGS_EVERY_50_MS = """
import sys, time
import rlab

run = rlab.init(resume_run_id=int(sys.argv[1]), url=sys.argv[2], token=sys.argv[3],
                spool_dir=sys.argv[4], flush_interval=float(sys.argv[5]))
step = 0
while True:
    run.log({"loss": step / 10}, step=step)
    run.log_rollouts([{"prompt": str(step), "completion": "c", "reward": 1.0}], step=step)
    print(step, flush=True)
    step += 1
    time.sleep(0.05)
"""


def test_a_kill_during_an_outage_loses_at_most_one_flush_interval(web, token, user, project,
                                                                  tmp_path):
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="kill -9")
    run_id = tracked_run_create(experiment=experiment, user=user).pk
    spool = tmp_path / "spool"
    # No server: nothing listens on this port, and the SDK keeps retrying.
    script = Script(LOGS_EVERY_50_MS, str(run_id), f"http://127.0.0.1:{free_port()}", token,
                    str(spool), str(FLUSH_INTERVAL))
    wait_until(lambda: len(script.lines) >= 80, timeout=60)  # 4 s: backoffs of 0.5, 1, 2 s
    killed_at = script.kill()
    logged = [int(line) for line in script.lines]

    assert rlab.sync(run_id, url=web, token=token, spool_dir=spool, timeout=60) is True

    stored = dict(MetricPoint.objects.filter(run_id=run_id).values_list("step", "wall_time"))
    last = max(stored)
    assert sorted(stored) == list(range(last + 1)), "nothing lost before the last flush"
    assert all(stored[step] for step in logged if step <= last)
    lost = killed_at - stored[last].timestamp()
    assert lost <= FLUSH_INTERVAL + 0.5, f"{lost:.2f} s of points lost"
    rollouts = sorted(Rollout.objects.filter(run_id=run_id).values_list("step", flat=True))
    assert rollouts == list(range(len(rollouts))), "rollouts lost only at the end"
    assert last - rollouts[-1] <= 1, "spooled in the same flush as the points"


HEARTBEATS_THEN_HANGS = """
import sys, time
import rlab

run = rlab.init(project=int(sys.argv[1]), experiment="silent", url=sys.argv[2],
                token=sys.argv[3], spool_dir=sys.argv[4], flush_interval=0.2,
                heartbeat_interval=0.5)
run.log({"loss": 1.0}, step=0)
print(run.id, flush=True)
time.sleep(3600)
"""


def test_a_killed_scripts_run_crashes_and_runs_again_when_resumed(web, token, project,
                                                                  tmp_path, settings):
    script = Script(HEARTBEATS_THEN_HANGS, str(project.pk), web, token, str(tmp_path))
    wait_until(lambda: script.lines)
    run = Run.objects.get(pk=int(script.lines[0]))
    started = run.heartbeat_at
    # Idle, it still heartbeats (a write counts at most every 10 s: this is the heartbeat).
    wait_until(lambda: Run.objects.get(pk=run.pk).heartbeat_at > started + timedelta(
        seconds=1), timeout=20)
    script.kill()

    later = timezone.now() + timedelta(seconds=settings.RLAB_TRACKED_STALE_AFTER_SECONDS + 1)
    assert tracked_runs_crash_stale(now=later) == [run.pk]
    assert Run.objects.get(pk=run.pk).status == RunStatus.CRASHED

    resumed = rlab.init(resume_run_id=run.pk, url=web, token=token, spool_dir=tmp_path)
    resumed.log({"loss": 0.5}, step=1)
    assert resumed.finish(timeout=30) is True

    run.refresh_from_db()
    assert (run.status, run.error_message) == (RunStatus.SUCCEEDED, "")
    assert list(MetricPoint.objects.filter(run=run).order_by("step").values_list(
        "step", "value")) == [(0, 1.0), (1, 0.5)]


def test_a_script_cut_off_long_enough_to_crash_goes_on_logging(web, token, project, tmp_path,
                                                               settings):
    run = rlab.init(project=project.pk, experiment="cut off", url=web, token=token,
                    spool_dir=tmp_path, flush_interval=0.2)
    run.log({"loss": 1.0}, step=0)
    wait_until(lambda: MetricPoint.objects.filter(run_id=run.id).exists())
    later = timezone.now() + timedelta(seconds=settings.RLAB_TRACKED_STALE_AFTER_SECONDS + 1)
    assert tracked_runs_crash_stale(now=later) == [run.id]

    run.log({"loss": 0.5}, step=1)  # refused as for an ended run, until the run runs again
    assert run.finish(timeout=30) is True

    assert Run.objects.get(pk=run.id).status == RunStatus.SUCCEEDED
    assert MetricPoint.objects.filter(run_id=run.id).count() == 2


def test_finish_says_what_the_server_refused(web, token, project, tmp_path, caplog):
    run = rlab.init(project=project.pk, experiment="refused", url=web, token=token,
                    spool_dir=tmp_path, flush_interval=0.2)
    run.log({"loss": 1.0}, step=0)
    wait_until(lambda: MetricPoint.objects.filter(run_id=run.id).exists())
    run.log({"bad\x00key": 1.0}, step=1)  # Postgres cannot store a NUL: 422

    assert run.finish(timeout=30) is False

    [refused] = run.refused
    assert "metrics batch" in refused and "HTTP 422" in refused
    assert "the server refused 1 batches" in caplog.text
    assert Run.objects.get(pk=run.id).status == RunStatus.SUCCEEDED
    assert list(run.spool_dir.iterdir()) == []
