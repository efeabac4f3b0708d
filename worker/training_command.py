"""The command line of a run's training process: one process, or one per device under torchrun.

`python -P -m training.process` for one device. For N devices, torchrun on this host alone
(`--standalone`: its rendezvous on a free local port, so runs side by side never meet) starts N
processes of the same module (training.parallel); they cannot read the worker's stdin, so the
request is a file. Both run in the run's folder; -P, and PYTHONSAFEPATH for the processes that
torchrun starts, keep that folder off the import path, so nothing in it is ever imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

# What the environment of a training process gets on top of the worker's filtered one: torchrun
# starts its processes with a plain `python`, which reads -P's setting from here.
SAFE_PATH_ENV = {"PYTHONSAFEPATH": "1"}


def training_command(devices: int, request_path: Path | None) -> list[str]:
    """The argument list that starts a run's training on `devices` devices; the request (the
    JSON object training.process reads) is in `request_path`, or, for one device and None, on
    stdin."""
    if devices < 1:
        raise ValueError(f"devices must be at least 1, not {devices}")
    request = ["--request", str(request_path)] if request_path is not None else []
    if devices == 1:
        return [sys.executable, "-P", "-m", "training.process", *request]
    if request_path is None:
        raise ValueError("processes under torchrun read their request from a file")
    return [sys.executable, "-P", "-m", "torch.distributed.run", "--standalone",
            "--nnodes=1", f"--nproc-per-node={devices}", "--max-restarts=0",
            "-m", "training.process", *request]
