"""Which workers run script runs, and what a killed one leaves: a worker takes script runs only
when started with RLAB_WORKER_SCRIPTS; a script run whose worker was killed is reaped by the
stale-run check, and the files it had imported are never imported again."""

from __future__ import annotations

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import tiny_run_config
from tests.stack import launch_run, start_worker, wait_for_run
from tests.worker.script_runs import launch_script, python_script, script_processes
from tests.worker.test_script_runs import TRL_ROWS
from webapp.jobs.script_spec import ScriptSpec
from webapp.runs import services
from webapp.runs.files import run_folder_name
from webapp.runs.models import LogLine, Rollout, Run, RunStatus
from worker.script_outputs import OutputWatcher

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_worker_without_the_opt_in_never_takes_a_script_run(tmp_path, project, user,
                                                              tiny_model):
    worker = start_worker(tmp_path)
    try:
        script = launch_script(project, user, python_script("print('ran')"))
        training = launch_run(project, user, "after the script",
                              tiny_run_config(tiny_model, max_steps=1))
        training = wait_for_run(training, lambda r: r.is_terminal, 120, worker)
        assert training.status == RunStatus.SUCCEEDED, training.error_message
        script.refresh_from_db()
        assert script.status == RunStatus.QUEUED and not script.worker
    finally:
        worker.stop()
    opted_in = start_worker(tmp_path, name="scripts-worker", RLAB_WORKER_SCRIPTS="1")
    try:
        services.queues_wake()  # as housekeeping re-sends what waits
        script = wait_for_run(script, lambda r: r.is_terminal, 60, opted_in)
        assert script.status == RunStatus.SUCCEEDED, script.error_message
    finally:
        opted_in.stop()


def test_a_killed_workers_script_run_is_reaped_and_its_files_are_not_imported_again(
        tmp_path, project, user):
    code = (TRL_ROWS + "import os, time\nos.makedirs('completions')\n"
            "write('completions/completions_00001.parquet', 1)\ntime.sleep(600)\n")
    spec = {"rollouts_format": "trl", "rollouts_path": "completions"}
    worker = start_worker(tmp_path, RLAB_WORKER_SCRIPTS="1", RLAB_SCRIPT_SCAN_SECONDS="1")
    try:
        run = launch_script(project, user, python_script(code), **spec)
        run = wait_for_run(run, lambda r: Rollout.objects.filter(run=r).exists(), 60, worker)
        script = script_processes(run.pk)
        worker.kill(signal.SIGKILL)
        worker.proc.wait(timeout=10)
    finally:
        worker.stop()
    # The script has its own session: it outlives the worker, as a training process does.
    for pid in script:
        os.kill(pid, signal.SIGKILL)

    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert services.runs_fail_stale() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "stopped responding" in run.error_message

    # Another worker's watcher, starting afresh on the run's folder, takes nothing again.
    imported = Rollout.objects.filter(run=run).count()
    logged = LogLine.objects.filter(run=run).count()
    folder = tmp_path / "runs" / run_folder_name(run.pk, run.created_at)
    watcher = OutputWatcher(run_id=run.pk, run_folder=folder, spec=ScriptSpec(argv=["x"], **spec))
    watcher.scan()
    watcher.scan(final=True)
    assert Rollout.objects.filter(run=run).count() == imported == 4
    assert LogLine.objects.filter(run=run).count() == logged


def test_a_worker_shutting_down_interrupts_its_script_run_and_stops_it(tmp_path, project, user):
    worker = start_worker(tmp_path, RLAB_WORKER_SCRIPTS="1")
    try:
        run = launch_script(project, user, python_script("import time; time.sleep(600)"))
        run = wait_for_run(run, lambda r: r.status == RunStatus.RUNNING
                           and script_processes(r.pk), 60, worker)
        worker.proc.send_signal(signal.SIGTERM)  # a warm shutdown: the main process only
        worker.proc.wait(timeout=30)
    finally:
        worker.stop()
    run.refresh_from_db()
    assert run.status == RunStatus.INTERRUPTED
    assert script_processes(run.pk) == {}
    assert LogLine.objects.filter(run=run, message__startswith="Interrupted").exists()
