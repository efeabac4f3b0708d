"""worker.training_command: the argument list of a run's training process(es)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from worker.training_command import training_command


def test_one_device_is_one_process_reading_stdin():
    assert training_command(1, None) == [sys.executable, "-P", "-m", "training.process"]


def test_several_devices_are_torchrun_alone_on_this_host_with_the_request_in_a_file():
    command = training_command(4, Path("/runs/run-1/.training-request.json"))

    assert command[:4] == [sys.executable, "-P", "-m", "torch.distributed.run"]
    assert {"--standalone", "--nnodes=1", "--nproc-per-node=4", "--max-restarts=0"} <= set(
        command)
    assert command[-4:] == ["-m", "training.process", "--request",
                            "/runs/run-1/.training-request.json"]


def test_several_devices_need_a_request_file():
    with pytest.raises(ValueError, match="from a file"):
        training_command(2, None)


@pytest.mark.parametrize("devices", [0, -1])
def test_no_devices_is_refused(devices):
    with pytest.raises(ValueError, match="at least 1"):
        training_command(devices, None)
