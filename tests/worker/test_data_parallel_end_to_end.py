"""A real worker with two devices (CPU process slots) runs a built-in run that asks for both as
two processes under torchrun (worker.training_command), and a cancel ends every one of them."""

from __future__ import annotations

import time

import pytest

from tests.conftest import tiny_run_config
from tests.stack import launch_run, start_worker, training_processes, wait_for_run
from webapp.runs import services
from webapp.runs.models import LogLine, MetricPoint, Rollout, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def worker(tmp_path, tiny_model, run_dir):
    process = start_worker(tmp_path, RLAB_RUN_DIR=str(run_dir), RLAB_WORKER_DEVICES="2")
    yield process
    process.stop()


def test_a_two_device_run_trains_under_torchrun_and_succeeds(worker, project, user, tiny_model,
                                                             run_dir):
    config = tiny_run_config(tiny_model, max_steps=2, prompts_per_step=2, devices=2)
    run = launch_run(project, user, "ddp", config)
    assert run.devices == 2

    run = wait_for_run(run, lambda r: r.is_terminal, 180, worker)

    assert run.status == RunStatus.SUCCEEDED, (run.error_message, list(
        LogLine.objects.filter(run=run).values_list("message", flat=True))[-60:])
    assert (run.progress_step, run.progress_total) == (2, 2)
    steps = sorted(MetricPoint.objects.filter(run=run, key="reward/mean")
                   .values_list("step", flat=True))
    assert steps == [1, 2]  # reported once, by the first process
    assert Rollout.objects.filter(run=run, step=1).count() == 2 * 2  # both processes' groups
    folder = run_dir / f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}"
    assert (folder / ".training-request.json").is_file()  # how torchrun's processes got it


def test_cancel_ends_every_process_of_a_two_device_run(worker, project, user, tiny_model):
    config = tiny_run_config(tiny_model, max_steps=100_000, prompts_per_step=2, devices=2)
    run = launch_run(project, user, "ddp-long", config)
    run = wait_for_run(run, lambda r: r.progress_step >= 1, 120, worker)
    # torchrun and its two processes
    assert len(training_processes(run.pk)) == 3

    assert services.run_cancel(run=run, user=user)
    cancelled_at = time.monotonic()
    while training_processes(run.pk) and time.monotonic() - cancelled_at < 30:
        time.sleep(0.1)

    assert training_processes(run.pk) == []
    run = wait_for_run(run, lambda r: LogLine.objects.filter(run=r, source="worker").exists(), 15)
    assert run.status == RunStatus.CANCELLED
