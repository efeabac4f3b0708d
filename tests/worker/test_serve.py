"""`manage.py serve` as a user runs it: the web server keeps serving while a killed worker is
started again, and Ctrl-C or SIGTERM stops everything, the run interrupted and no process left."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from tests.conftest import tiny_run_config
from tests.stack import launch_run, processes, start_serve, training_processes, wait_for_run
from webapp.runs.models import RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _worker_pids(serve) -> set[int]:
    return {pid for pid, command in processes(parent=serve.proc.pid).items()
            if "celery" in command}


def _wait_for_exit(serve, timeout: float) -> int:
    returncode = serve.proc.wait(timeout=timeout)
    deadline = time.monotonic() + 5
    while processes(group=serve.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes(group=serve.proc.pid) == {}, "serve left processes behind"
    return returncode


def test_serve_starts_a_killed_worker_again_while_the_web_keeps_serving_then_stops_cleanly(
        tmp_path, project, user, tiny_model):
    serve, base_url = start_serve(tmp_path)
    try:
        (killed,) = _worker_pids(serve)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (_worker_pids(serve) - {killed} and serve.output().count(" ready.") == 2):
            assert time.monotonic() < deadline, serve.output()[-4000:]
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as response:
                assert response.status == 200
            time.sleep(0.2)
        assert "the worker exited (killed by SIGKILL)" in serve.output()

        run = launch_run(project, user, "after the restart", tiny_run_config(tiny_model,
                                                                              max_steps=2))
        run = wait_for_run(run, lambda r: r.is_terminal, 120, serve)
        assert run.status == RunStatus.SUCCEEDED, run.error_message

        serve.proc.send_signal(signal.SIGTERM)  # serve itself, as a service manager stops it
        assert _wait_for_exit(serve, timeout=60) == 0
    finally:
        serve.stop()


def test_ctrl_c_during_a_run_interrupts_it_and_leaves_no_process(tmp_path, project, user,
                                                                 tiny_model):
    serve, base_url = start_serve(tmp_path)
    try:
        run = launch_run(project, user, "stopped", tiny_run_config(tiny_model, max_steps=100_000))
        run = wait_for_run(run, lambda r: r.progress_step >= 1, 120, serve)

        os.killpg(serve.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        run = wait_for_run(run, lambda r: r.is_terminal, 3, serve)
        assert run.status == RunStatus.INTERRUPTED
        assert _wait_for_exit(serve, timeout=60) == 0
        assert training_processes(run.pk) == []
    finally:
        serve.stop()
