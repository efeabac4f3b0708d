"""Where a run's files are, and how much room a folder takes.

A worker gives each run its own folder, `<RLAB_RUN_DIR>/run-<id>-<created>` (worker.supervisor),
and the training process writes its checkpoints into it. The web app sees that folder at the same
path as the workers (settings.RLAB_RUN_DIR), which is how it sizes and removes it.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone as dt_timezone
from pathlib import Path

from django.conf import settings

# What run_folder names, and nothing else: the only folders a deletion may remove.
RUN_FOLDER_NAME = re.compile(r"run-[0-9]+-[0-9]{8}-[0-9]{6}")


def run_folder_name(run_id: int, created_at: datetime) -> str:
    """`run-<id>-<created, UTC>`: the creation time keeps a run's folder its own even when a new
    database numbers runs from 1 again."""
    return f"run-{run_id}-{created_at.astimezone(dt_timezone.utc):%Y%m%d-%H%M%S}"


def run_folder(run_id: int, created_at: datetime) -> Path:
    return Path(settings.RLAB_RUN_DIR) / run_folder_name(run_id, created_at)


def folder_bytes(path: Path | str) -> int:
    """Bytes in the files under `path`, links not followed; 0 for a folder that is not there (or
    not visible from here). Files removed while it counts are skipped."""
    total = 0
    pending = [os.fspath(path)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
    return total
