"""A real worker reports itself from its housekeeping (the workers page's row) and leaves the
list when it shuts down cleanly."""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from tests.stack import start_worker, worker_name
from webapp.queue.models import Worker
from worker.housekeeping import Housekeeper, worker_device

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for_worker_row(name: str, present: bool, timeout: float) -> Worker | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Worker.objects.filter(name=name).first()
        if (row is not None) == present:
            return row
        time.sleep(0.2)
    raise AssertionError(f"worker {name} {'never appeared' if present else 'stayed listed'}")


def test_a_worker_reports_its_queues_slots_and_pid_and_leaves_on_shutdown(tmp_path):
    worker = start_worker(tmp_path, RLAB_WORKER_DEVICE="cpu (test box)")
    try:
        row = wait_for_worker_row(worker_name(), present=True, timeout=30)
        assert row.queues == ["cpu", "gpu"]
        assert (row.slots, row.pid, row.device) == (1, worker.proc.pid, "cpu (test box)")
        assert row.started_at <= row.heartbeat_at
    finally:
        worker.stop()
    wait_for_worker_row(worker_name(), present=False, timeout=15)


def test_a_housekeeper_without_a_consumer_reports_one_slot_and_no_queues(db):
    Housekeeper(worker_name="celery@bare").report()
    row = Worker.objects.get(name="celery@bare")
    assert (row.queues, row.slots) == ([], 1)


def test_the_device_setting_names_the_workers_device():
    with override_settings(RLAB_WORKER_DEVICE="cuda: 8 × H100"):
        assert worker_device() == "cuda: 8 × H100"
