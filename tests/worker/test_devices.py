"""A worker's devices: what it advertises, what each run's process sees, and a real worker with
two CPU slots running two 1-device runs at once, then a 2-device run once both have ended."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.conftest import tiny_run_config
from tests.stack import start_worker, training_processes, wait_for_run, worker_name
from webapp.config.env import devices_parse
from webapp.experiments.services import experiment_create
from webapp.queue.models import Worker
from webapp.queue.selectors import run_wait
from webapp.runs import services
from webapp.runs.models import RunStatus
from worker.devices import device_environment, devices_resolve, gpus_from_listing
from worker.housekeeping import Housekeeper
from worker.supervisor import RunSupervisor

LISTING = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5e0a1c2d-0000-0000-0000-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-6f1b2d3e-0000-0000-0000-000000000000)
"""
MIG_LISTING = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)
  MIG 3g.20gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)
  MIG 3g.20gb     Device  1: (UUID: MIG-66666666-7777-8888-9999-000000000000)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)
"""


def test_nvidia_smi_lists_gpu_indices():
    assert gpus_from_listing(LISTING) == ["0", "1"]


def test_a_gpu_in_mig_mode_gives_its_instances_by_uuid():
    assert gpus_from_listing(MIG_LISTING) == ["MIG-11111111-2222-3333-4444-555555555555",
                                             "MIG-66666666-7777-8888-9999-000000000000", "1"]


def test_a_count_on_a_machine_without_gpus_is_that_many_cpu_slots():
    assert devices_resolve("3", visible="") == ("cpu0", "cpu1", "cpu2")


def test_no_setting_and_no_gpus_is_one_cpu_slot():
    assert devices_resolve("", visible="") == ("cpu0",)


def test_listed_ids_are_taken_as_given():
    assert devices_resolve("1,3", visible="") == ("1", "3")
    assert devices_resolve("5,", visible=None) == ("5",)


def test_the_workers_own_cuda_visible_devices_bounds_what_it_gives():
    assert devices_resolve("", visible="2,3") == ("2", "3")
    assert devices_resolve("1", visible="2,3") == ("2",)


def test_a_count_beyond_the_gpus_stops_the_worker_saying_what_it_has():
    with pytest.raises(ImproperlyConfigured, match=r"asks for 4 GPUs, but this worker may use "
                                                   r"2 \(6, 7\)"):
        devices_resolve("4", visible="6,7")


@pytest.mark.parametrize("text, message", [
    ("0", "between 1 and 1024"),
    ("99999", "between 1 and 1024"),
    ("1,,2", "'' is not a CUDA device id"),
    ("0,1,0", "listed twice"),
    ("0;rm -rf /", "is not a CUDA device id"),
    ("0,\x00", "is not a CUDA device id"),
    ("\ud800", "is not a CUDA device id"),
    ("٣", "is not a CUDA device id"),  # a digit, but not an ASCII one
])
def test_a_bad_devices_setting_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        devices_parse(text)


def test_the_setting_is_checked_at_start_up(monkeypatch):
    from webapp.config.env import env_devices

    monkeypatch.setenv("RLAB_WORKER_DEVICES", "two")
    with pytest.raises(ImproperlyConfigured, match="RLAB_WORKER_DEVICES='two'"):
        env_devices("RLAB_WORKER_DEVICES")


def test_a_runs_process_sees_its_own_gpus_or_on_cpu_none():
    assert device_environment(["1", "3"]) == {"CUDA_VISIBLE_DEVICES": "1,3"}
    assert device_environment(["cpu0", "cpu1"]) == {"CUDA_VISIBLE_DEVICES": ""}
    assert device_environment([]) == {}


def test_the_child_environment_replaces_the_workers_cuda_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    now = datetime.now(timezone.utc)
    supervisor = RunSupervisor(run_id=1, config={}, created_at=now, device_ids=["2"])
    assert supervisor._child_environment()["CUDA_VISIBLE_DEVICES"] == "2"
    on_cpu = RunSupervisor(run_id=1, config={}, created_at=now, device_ids=["cpu1"])
    assert on_cpu._child_environment()["CUDA_VISIBLE_DEVICES"] == ""


@pytest.mark.django_db
def test_housekeeping_reports_the_workers_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU slots, on a machine with GPUs too
    with override_settings(RLAB_WORKER_DEVICES="2"):
        Housekeeper(worker_name="celery@two").report()
    assert Worker.objects.get(name="celery@two").devices == ["cpu0", "cpu1"]


def child_environment(pid: int) -> dict[str, str]:
    return dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes()
                .decode().split("\0") if "=" in item)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_with_two_slots_runs_two_one_device_runs_then_a_two_device_run(
        tmp_path, project, user, tiny_model):
    # Two CPU slots, on a machine with GPUs too.
    worker = start_worker(tmp_path, concurrency=2, RLAB_WORKER_DEVICES="2",
                          CUDA_VISIBLE_DEVICES="")
    try:
        worker.wait_for_output("devices for runs: cpu0, cpu1", timeout=30)

        def launch(name: str, devices: int, **config):
            experiment = experiment_create(project=project, author=user, name=name,
                                           description="",
                                           config=tiny_run_config(tiny_model, **config))
            return services.run_launch(experiment=experiment, user=user, devices=devices)

        first = launch("first", 1, max_steps=100_000)
        second = launch("second", 1, max_steps=100_000)
        both = launch("both", 2, max_steps=2)
        for run in (first, second):
            wait_for_run(run, lambda r: r.status == RunStatus.RUNNING, 120, worker)
        assert {tuple(first.device_ids), tuple(second.device_ids)} == {("cpu0",), ("cpu1",)}
        assert first.worker == second.worker == worker_name()
        assert first.device == second.device == "cpu"
        for run in (first, second):
            deadline = time.monotonic() + 30
            while not (pids := training_processes(run.pk)):
                assert time.monotonic() < deadline, worker.output()[-4000:]
                time.sleep(0.2)
            assert child_environment(pids[0])["CUDA_VISIBLE_DEVICES"] == ""
        both.refresh_from_db()
        assert both.status == RunStatus.QUEUED
        assert "busy" in run_wait(both)

        assert services.run_cancel(run=first, user=user)
        wait_for_run(first, lambda r: r.is_terminal, 60, worker)
        assert services.run_cancel(run=second, user=user)
        both = wait_for_run(both, lambda r: r.is_terminal, 180, worker)
    finally:
        worker.stop()
    first.refresh_from_db()
    second.refresh_from_db()
    assert both.status == RunStatus.SUCCEEDED, both.error_message
    assert both.device_ids == ["cpu0", "cpu1"] and both.device == "cpu ×2"
    assert both.started_at >= max(first.finished_at, second.finished_at), \
        "the 2-device run started while a 1-device run held a device"
