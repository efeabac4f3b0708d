"""The SDK against the real ASGI server on the test database: a run keeps logging while the
server is down and every point is stored exactly once; a crashed process's spool is sent later.

At-least-once delivery (a batch leaves the spool only once acknowledged) plus the server's
idempotent writes (unique per (run, key, step) and (run, step, group, sample)) is what makes
"exactly once" true here."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import rlab
from rlab.spool import Spool
from tests.stack import free_port, start_web
from webapp.api.tokens import token_create
from webapp.runs.models import MetricPoint, Rollout, Run, RunStatus
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_until(condition, timeout: float = 30.0, failure=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"the condition never held {failure()}")
        time.sleep(0.1)


def metrics_of(run_id: int) -> tuple[Counter, dict]:
    rows = list(MetricPoint.objects.filter(run_id=run_id).values_list("key", "step", "value"))
    return Counter((key, step) for key, step, _ in rows), {(k, s): v for k, s, v in rows}


def test_points_logged_while_the_server_is_down_are_stored_once_each(user, project, tmp_path):
    token = token_create(user=user, name="sdk")[1]
    port = free_port()
    spool = tmp_path / "spool"
    logged: dict[tuple[str, int], float] = {}
    web = start_web(tmp_path, port, "web-1")[0]
    try:
        run = rlab.init(project=project.pk, experiment="sdk-restart", name="through a restart",
                        config={"lr": 1e-6, "model": {"layers": 2}}, tags={"host": "test"},
                        url=f"http://127.0.0.1:{port}", token=token, spool_dir=spool,
                        flush_interval=0.2, retry_max_delay=1.0)

        def log_steps(steps: range) -> None:
            for step in steps:
                values = {"loss/policy": 1 / (step + 1), "reward/mean": step / 1000}
                run.log(values, step=step)
                logged.update({(key, step): value for key, value in values.items()})
                if step % 50 == 0:
                    run.log_rollouts([{"prompt": f"{step} + 1", "completion": str(step + 1),
                                       "reward": 1.0, "group": 0, "sample_index": i}
                                      for i in range(2)], step=step)
                time.sleep(0.005)

        log_steps(range(0, 100))
        wait_until(lambda: metrics_of(run.id)[0])  # the first batches reached the server
        web.stop()
        log_steps(range(100, 300))
        # What was logged meanwhile waits on disk, not in memory.
        wait_until(lambda: any(spool.glob(f"{run.id}/*.metrics.json")))
        web = start_web(tmp_path, port, "web-2")[0]
        log_steps(range(300, 400))

        assert run.finish(timeout=45) is True
    finally:
        web.stop()

    counts, stored = metrics_of(run.id)
    assert set(counts) == set(logged) and set(counts.values()) == {1}
    assert stored == logged
    rollouts = Counter(Rollout.objects.filter(run_id=run.id)
                       .values_list("step", "group", "sample_index"))
    assert rollouts == Counter({(step, 0, i): 1 for step in range(0, 400, 50) for i in range(2)})
    finished = Run.objects.get(pk=run.id)
    assert finished.status == RunStatus.SUCCEEDED
    assert finished.config == {"lr": "1e-06", "model.layers": "2"}
    assert list((spool / str(run.id)).iterdir()) == []


def test_sync_sends_what_a_crashed_process_left_once_each(user, project, tmp_path):
    token = token_create(user=user, name="sdk")[1]
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="sdk-sync")
    run_id = tracked_run_create(experiment=experiment, user=user, name="crashed").pk
    spool = tmp_path / "spool"
    # A process whose server was unreachable to the end: all it logged is in its spool.
    crashed = rlab.init(resume_run_id=run_id, url=f"http://127.0.0.1:{free_port()}",
                        token=token, spool_dir=spool, flush_interval=3600, flush_points=100)
    for step in range(250):
        crashed.log({"loss": step / 10}, step=step)
    crashed.finish("failed", timeout=0)
    (spool / str(run_id) / "000000099.metrics.json.tmp").write_text('{"series": [{"ke')
    first_batch = sorted((spool / str(run_id)).glob("*.metrics.json"))[0].read_bytes()
    port = free_port()
    web = start_web(tmp_path, port)[0]
    try:
        # The first batch reached the server before the crash, but its answer never arrived.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/runs/{run_id}/metrics", data=first_batch,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        sent = sum(len(series["steps"]) for series in json.loads(first_batch)["series"])
        assert json.load(urllib.request.urlopen(request))["received"] == sent

        assert rlab.sync(run_id, url=f"http://127.0.0.1:{port}", token=token,
                         spool_dir=spool, timeout=45) is True

        # A batch for a run that has ended can never be stored (409): dropped, not retried,
        # and said.
        Spool.for_run(run_id, spool).append("metrics", b'{"points": [{"key": "late", '
                                                       b'"step": 0, "value": 1}]}')
        assert rlab.sync(run_id, url=f"http://127.0.0.1:{port}", token=token,
                         spool_dir=spool, timeout=45) is False
    finally:
        web.stop()

    counts, stored = metrics_of(run_id)
    assert stored == {("loss", step): step / 10 for step in range(250)}
    assert set(counts.values()) == {1}
    assert Run.objects.get(pk=run_id).status == RunStatus.FAILED
    assert list((spool / str(run_id)).iterdir()) == []


class LosesFirstAnswer(BaseHTTPRequestHandler):
    """Relays POSTs to the real server, but hangs up instead of answering the first one that
    starts a run: the run was created, and the script never heard."""

    upstream = ""
    lost: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = urllib.request.Request(self.upstream + self.path, data=body, method="POST",
                                         headers={k: self.headers[k] for k in
                                                  ("Authorization", "Content-Type")})
        try:
            with urllib.request.urlopen(request) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, answer = error.code, error.read()
        if self.path.endswith("/tracked-runs") and not self.lost:
            self.lost.append(self.path)
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


def test_a_run_whose_creation_answer_was_lost_is_created_once(user, project, tmp_path):
    token = token_create(user=user, name="sdk")[1]
    port = free_port()
    web = start_web(tmp_path, port, "web")[0]
    LosesFirstAnswer.upstream, LosesFirstAnswer.lost = f"http://127.0.0.1:{port}", []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), LosesFirstAnswer)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        run = rlab.init(project=project.pk, experiment="lost-answer",
                        url=f"http://127.0.0.1:{proxy.server_address[1]}", token=token,
                        spool_dir=tmp_path / "spool")
        run.log({"loss": 0.5}, step=0)
        assert run.finish(timeout=30) is True
    finally:
        proxy.shutdown()
        web.stop()

    assert LosesFirstAnswer.lost  # the script did retry
    runs = Run.objects.filter(experiment__name="lost-answer")
    assert [r.pk for r in runs] == [run.id]
    assert runs[0].status == RunStatus.SUCCEEDED
    assert MetricPoint.objects.get(run_id=run.id).value == 0.5
