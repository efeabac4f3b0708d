"""A real Celery worker started with RLAB_WORKER_SCRIPTS runs script runs: a command as its own
process group, its output in the run's log, its exit code as the outcome, cancel, and the rollout
files and checkpoint folders it writes taken into the run."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.stack import start_worker, wait_for_run
from tests.worker.script_runs import launch_script, python_script, script_processes
from webapp.jobs.models import OutputKind, ScriptOutput
from webapp.runs import services
from webapp.runs.models import Checkpoint, LogLine, Rollout, Run, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

HEAD = TAIL = 4096


@pytest.fixture(scope="module")
def worker(tmp_path_factory, django_db_setup, django_db_blocker):
    """One worker for the module's runs (each test's rows are its own)."""
    folder = tmp_path_factory.mktemp("script-worker")
    with django_db_blocker.unblock():
        process = start_worker(folder, RLAB_WORKER_SCRIPTS="1", RLAB_SCRIPT_SCAN_SECONDS="1",
                               RLAB_SCRIPT_LOG_HEAD_BYTES=str(HEAD),
                               RLAB_SCRIPT_LOG_TAIL_BYTES=str(TAIL),
                               RLAB_URL="http://rlab.example:8000", HF_TOKEN="hf_secret_value_1")
    process.run_dir = folder / "runs"
    yield process
    process.stop()


def log_of(run: Run) -> list[str]:
    return list(LogLine.objects.filter(run=run).order_by("time", "pk")
                .values_list("message", flat=True))


def test_a_script_gets_the_runs_identity_and_its_output_is_logged_with_secrets_redacted(
        worker, project, user):
    code = ("import json, os; env = dict(os.environ); print(json.dumps(env), flush=True); "
            "print('token:', env['RLAB_TOKEN'], env['HF_TOKEN']); "
            # across the point where a long line is cut into pieces
            "print('x' * 8170 + env['RLAB_TOKEN'] + 'y' * 10); "
            "import sys; print('to stderr', file=sys.stderr)")
    run = launch_script(project, user, python_script(code), environment={
        "GREETING": "hi", "MLFLOW_RUN_ID": "999999", "RLAB_URL": "http://elsewhere",
        "MLFLOW_TRACKING_PASSWORD": "a-password-9"})
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.device == "cpu" and run.running_since is not None
    lines = log_of(run)
    env = json.loads(next(line for line in lines if line.startswith("{")))
    assert env["RLAB_RUN_ID"] == env["MLFLOW_RUN_ID"] == str(run.pk)
    assert env["RLAB_URL"] == "http://rlab.example:8000"
    assert env["MLFLOW_TRACKING_URI"] == f"http://rlab.example:8000/mlflow/{project.pk}"
    assert env["RLAB_TOKEN"] == env["MLFLOW_TRACKING_TOKEN"] == "[redacted]"
    assert env["RLAB_OUTPUT_DIR"] == str(worker.run_dir.resolve() / (
        f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}"))
    assert env["GREETING"] == "hi"
    assert "MLFLOW_TRACKING_PASSWORD" not in env, "the template cannot change the identity"
    assert not {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"} & set(env)
    assert "token: [redacted] [redacted]" in lines
    assert LogLine.objects.get(run=run, message="to stderr").source == "stderr"
    assert "x" * 8170 + "[redacted]" + "y" * 10 in "".join(lines)
    assert not any("hf_secret_value_1" in line or "rlab_" in line for line in lines[1:])
    assert run.run_tokens.count() == 1


def test_a_script_that_exits_with_3_fails_with_its_code_and_last_output(worker, project, user):
    code = "import sys; print('step 1 ok'); print('boom: bad reward', file=sys.stderr); sys.exit(3)"
    run = launch_script(project, user, python_script(code))
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)

    assert run.status == RunStatus.FAILED
    assert run.error_message.startswith("The script exited with code 3.")
    assert "step 1 ok" in run.error_message and "boom: bad reward" in run.error_message


def test_a_program_not_found_fails_the_run_saying_so(worker, project, user):
    run = launch_script(project, user, ["no-such-trainer-xyz", "--lr", "1e-6"])
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)

    assert run.status == RunStatus.FAILED
    assert "The program 'no-such-trainer-xyz' was not found on the worker" in run.error_message


def test_a_working_folder_that_does_not_exist_fails_the_run(worker, project, user, tmp_path):
    run = launch_script(project, user, python_script("print(1)"),
                        working_dir=str(tmp_path / "missing"))
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)

    assert run.status == RunStatus.FAILED
    assert f"working folder {tmp_path / 'missing'} does not exist" in run.error_message


def test_a_script_runs_in_its_working_folder(worker, project, user, tmp_path):
    run = launch_script(project, user, python_script("import os; print('cwd', os.getcwd())"),
                        working_dir=str(tmp_path))
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert f"cwd {tmp_path}" in log_of(run)


def _peak_memory_kib(pid: int) -> int:
    """The peak resident memory of a worker process and its pool's processes."""
    peaks = []
    for proc in [pid, *_children(pid)]:
        try:
            status = open(f"/proc/{proc}/status").read()
        except OSError:
            continue
        peaks += [int(line.split()[1]) for line in status.splitlines()
                  if line.startswith("VmHWM:")]
    return max(peaks)


def _children(pid: int) -> list[int]:
    from tests.stack import processes

    return list(processes(parent=pid))


def test_a_flood_of_output_keeps_the_head_and_the_tail_and_says_what_it_dropped(
        worker, project, user):
    # 30 MB of numbered lines, then 100 MB in one line without a newline, then a last line.
    code = ("import sys\n"
            "out = sys.stdout.buffer\n"
            "for i in range(300_000): out.write(b'line %07d ' % i + b'x' * 84 + b'\\n')\n"
            "block = b'y' * (1 << 20)\n"
            "for _ in range(100): out.write(block)\n"
            "out.write(b'\\nthe last line\\n')\n")
    before = _peak_memory_kib(worker.proc.pid)
    run = launch_script(project, user, python_script(code))
    run = wait_for_run(run, lambda r: r.is_terminal, 120, worker)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    lines = log_of(run)
    assert lines[0].startswith("line 0000000 ")
    assert lines[-1] == "the last line"
    assert sum(len(line) + 1 for line in lines) < HEAD + TAIL + 2000
    dropped = [line for line in lines if "of output were dropped here" in line]
    assert len(dropped) == 1
    # Every byte is either logged (head, tail) or counted as dropped.
    assert "(RLAB_SCRIPT_LOG_HEAD_BYTES, RLAB_SCRIPT_LOG_TAIL_BYTES)" in dropped[0]
    dropped_bytes = int(re.search(r"\((\d+) bytes\)", dropped[0]).group(1))
    printed = 300_000 * 98 + 100 * 2**20 + len("\nthe last line\n")
    assert printed - HEAD - TAIL - 20_000 < dropped_bytes < printed
    assert all(len(line) <= 8192 for line in lines)
    grew = _peak_memory_kib(worker.proc.pid) - before
    assert grew < 64 * 1024, f"the worker's memory grew by {grew} KiB reading 130 MB of output"


def test_a_silent_script_heartbeats_and_cancel_ends_its_whole_group(worker, project, user):
    # A child that ignores SIGTERM: only the SIGKILL after the grace period ends it.
    code = ("import signal, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
            "time.sleep(600)\n")
    run = launch_script(project, user, python_script(code))
    run = wait_for_run(run, lambda r: r.status == RunStatus.RUNNING
                       and len(script_processes(r.pk)) == 2, 60, worker)
    first_beat = run.heartbeat_at
    run = wait_for_run(run, lambda r: r.heartbeat_at > first_beat, 10, worker)
    assert not LogLine.objects.filter(run=run).exists()

    assert services.run_cancel(run=run, user=user)
    deadline = time.monotonic() + 1 + 3 + 5  # a heartbeat, the grace period, a margin
    while script_processes(run.pk) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert script_processes(run.pk) == {}
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


TRL_ROWS = ("import pyarrow as pa, pyarrow.parquet as pq\n"
            "def write(path, step):\n"
            "    pq.write_table(pa.table({'step': [step] * 4, 'prompt': ['1+1?', '1+1?', '2+2?', "
            "'2+2?'], 'completion': ['2', '3', '4', '4'], 'correct': [1.0, 0.0, 1.0, 1.0], "
            "'advantage': [0.5, -0.5, 0.0, 0.0]}), path)\n")


def test_rollout_files_are_imported_while_it_runs_and_a_bad_one_is_named_in_the_log(
        worker, project, user, tmp_path):
    outside = tmp_path / "outside.parquet"
    code = (TRL_ROWS +
            "import os, time\n"
            f"write({str(outside)!r}, 9)\n"
            "os.makedirs('completions')\n"
            "write('completions/completions_00001.parquet', 1)\n"
            "open('completions/completions_00002.parquet', 'wb').write(b'PAR1 not parquet PAR1')\n"
            f"os.symlink({str(outside)!r}, 'completions/completions_00009.parquet')\n"
            "time.sleep(600)\n")
    run = launch_script(project, user, python_script(code), rollouts_format="trl",
                        rollouts_path="completions")
    run = wait_for_run(run, lambda r: Rollout.objects.filter(run=r).exists(), 60, worker)
    assert run.status == RunStatus.RUNNING, "imported while the script runs"
    assert sorted(Rollout.objects.filter(run=run).values_list("completion", flat=True)) == [
        "2", "3", "4", "4"]
    bad = "completions/completions_00002.parquet"
    run = wait_for_run(run, lambda r: ScriptOutput.objects.filter(run=r, path=bad).exists(),
                       30, worker)
    assert ScriptOutput.objects.get(run=run, path=bad).problem
    assert any(line.startswith(f"Could not import {bad}") for line in log_of(run))

    services.run_cancel(run=run, user=user)
    run = wait_for_run(run, lambda r: not script_processes(r.pk), 20, worker)
    assert set(Rollout.objects.filter(run=run).values_list("step", flat=True)) == {1}
    assert set(ScriptOutput.objects.filter(run=run).values_list("path", "kind")) == {
        ("completions/completions_00001.parquet", OutputKind.ROLLOUTS),
        (bad, OutputKind.ROLLOUTS)}


def test_a_checkpoint_folder_becomes_a_checkpoint_of_the_run(worker, project, user, tiny_model):
    code = ("import os, shutil, sys, time\n"
            f"shutil.copytree({str(tiny_model)!r}, 'out/tmp-2')\n"
            "os.rename('out/tmp-2', 'out/checkpoint-2')\n"
            "os.makedirs('out/checkpoint-4')\n"  # no weights: not a checkpoint
            "open('out/checkpoint-4/config.json', 'w').write('{}')\n"
            "time.sleep(3)\n")
    run = launch_script(project, user, python_script(code), checkpoints_path="out")
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)
    assert run.status == RunStatus.SUCCEEDED, run.error_message

    checkpoint = Checkpoint.objects.get(run=run)
    assert checkpoint.step == 2
    assert checkpoint.path.endswith(f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}/out/"
                                    "checkpoint-2")
    assert (worker.run_dir / checkpoint.path).joinpath("config.json").is_file()
    assert "Recorded the checkpoint out/checkpoint-2 (step 2)." in log_of(run)
