"""The devices a worker gives its runs, and what a run's process sees of them.

A worker host's devices are shared by its concurrent tasks: each run is given `Run.devices` of
them when claimed (webapp.runs.services.run_claim_next), and its process sees only those
(CUDA_VISIBLE_DEVICES), so a worker with 8 GPUs runs eight 1-GPU runs or one 8-GPU run.

The list comes from RLAB_WORKER_DEVICES (a count, or CUDA ids), else the GPUs the worker may use
(its own CUDA_VISIBLE_DEVICES, else what `nvidia-smi -L` lists), else one CPU slot. On CPU a
device is a process slot ("cpu0", "cpu1"): it bounds how many processes the worker's runs start
at once. The worker never imports torch (its training processes do), so it asks the driver's
tool, once per process.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from webapp.config.env import devices_parse

CPU_PREFIX = "cpu"
# `nvidia-smi -L`: a GPU per line ("GPU 0: NVIDIA H100 (UUID: GPU-…)"), and under a GPU in MIG
# mode its instances ("  MIG 1g.10gb Device 0: (UUID: MIG-…)"), which CUDA reaches by UUID only.
_GPU_LINE = re.compile(r"^GPU (\d+):")
_MIG_LINE = re.compile(r"^\s+MIG .*\(UUID: (MIG-[A-Za-z0-9/-]+)\)")


def worker_devices() -> list[str]:
    """This worker's devices, from the setting and the machine (see the module's docstring).
    ImproperlyConfigured when the setting asks for more GPUs than the worker may use."""
    return list(devices_resolve(settings.RLAB_WORKER_DEVICES,
                                visible=os.environ.get("CUDA_VISIBLE_DEVICES")))


@functools.lru_cache(maxsize=8)
def devices_resolve(setting: str, *, visible: str | None) -> tuple[str, ...]:
    """The devices for RLAB_WORKER_DEVICES=`setting` on a worker whose own CUDA_VISIBLE_DEVICES
    is `visible` (None: unset, so every GPU nvidia-smi lists)."""
    parsed = devices_parse(setting)
    if isinstance(parsed, list):
        return tuple(parsed)
    gpus = gpus_visible(visible)
    if parsed is None:
        return tuple(gpus) or (f"{CPU_PREFIX}0",)
    if not gpus:
        return tuple(f"{CPU_PREFIX}{i}" for i in range(parsed))
    if parsed > len(gpus):
        raise ImproperlyConfigured(
            f"RLAB_WORKER_DEVICES={setting} asks for {parsed} GPUs, but this worker may use "
            f"{len(gpus)} ({', '.join(gpus)}); give a smaller count, or the GPUs' ids.")
    return tuple(gpus[:parsed])


def gpus_visible(visible: str | None) -> list[str]:
    """The GPUs a worker whose CUDA_VISIBLE_DEVICES is `visible` may give runs: those it names
    ("" names none), else those nvidia-smi lists."""
    if visible is not None:
        return [item.strip() for item in visible.split(",")
                if item.strip() and item.strip() != "-1"]
    return list(gpus_listed())


@functools.cache
def gpus_listed() -> tuple[str, ...]:
    """The CUDA ids of the GPUs nvidia-smi lists; none without the tool or a driver that
    answers."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(gpus_from_listing(listing))


def gpus_from_listing(listing: str) -> list[str]:
    """The CUDA ids in `nvidia-smi -L` output: each GPU's index, or the UUIDs of its MIG
    instances where it is partitioned.

    >>> gpus_from_listing("GPU 0: A (UUID: GPU-a)\\nGPU 1: B (UUID: GPU-b)\\n"
    ...                   "  MIG 1g.10gb     Device  0: (UUID: MIG-b0)\\n")
    ['0', 'MIG-b0']
    """
    gpus: list[tuple[str, list[str]]] = []
    for line in listing.splitlines():
        if match := _GPU_LINE.match(line):
            gpus.append((match.group(1), []))
        elif (match := _MIG_LINE.match(line)) and gpus:
            gpus[-1][1].append(match.group(1))
    return [device for index, instances in gpus for device in (instances or [index])]


def is_cpu_slot(device: str) -> bool:
    return device.startswith(CPU_PREFIX)


def device_environment(device_ids: Sequence[str]) -> dict[str, str]:
    """What a run's process gets in its environment for the devices it was given: the GPUs
    alone, or on CPU slots none at all (so that it never takes a GPU it was not given); nothing
    for a run claimed without devices (it keeps the worker's own setting)."""
    if not device_ids:
        return {}
    gpus = [device for device in device_ids if not is_cpu_slot(device)]
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}
