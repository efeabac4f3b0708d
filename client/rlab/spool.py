"""The on-disk queue between a script and the server: each batch is a file, written and
fsync'd before it is sent, deleted only once the server has answered for it.

A batch is written to `NNNNNNNNN.<kind>.json.tmp`, fsync'd, then renamed to
`NNNNNNNNN.<kind>.json` (and the folder fsync'd), so a file with the final name is always whole.
A crash mid-write leaves only a `.tmp`, which is never sent, and removed when the spool is next
opened. Files are sent in the order
of their number; a new process on the same run continues the numbering after what it finds.
One process writes to a run's spool at a time."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("rlab")

ENTRY_NAME = re.compile(r"^(\d{9})\.([a-z]+)\.json$")
PARTIAL_NAME = re.compile(r"^(\d{9})\.[a-z]+\.json\.tmp$")


def spool_root() -> Path:
    """RLAB_SPOOL_DIR, else the user's cache folder (XDG_CACHE_HOME or ~/.cache) /rlab/spool."""
    configured = os.environ.get("RLAB_SPOOL_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "rlab" / "spool"


@dataclass(frozen=True, order=True)
class Entry:
    number: int
    kind: str  # the endpoint under /api/runs/<id>/: metrics, rollouts, params, finish
    path: Path


class Spool:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        numbers = [0]
        for name in os.listdir(self.directory):
            if PARTIAL_NAME.match(name):
                # Only a process that crashed mid-write leaves one: its batch was never whole.
                log.warning("removing %s, a batch whose writing was interrupted",
                            self.directory / name)
                (self.directory / name).unlink(missing_ok=True)
            elif match := ENTRY_NAME.match(name):
                numbers.append(int(match.group(1)))
        self._next = max(numbers) + 1

    @classmethod
    def for_run(cls, run_id: int, root: Path | None = None) -> Spool:
        return cls((root or spool_root()) / str(run_id))

    def append(self, kind: str, body: bytes) -> Entry:
        """Write one batch durably; it is in the spool once this returns."""
        number, self._next = self._next, self._next + 1
        path = self.directory / f"{number:09d}.{kind}.json"
        partial = path.with_name(path.name + ".tmp")
        with open(partial, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
        self._sync_directory()
        return Entry(number, kind, path)

    def pending(self) -> list[Entry]:
        """Whole batches in the order they were written. A `.tmp` is never one: it is either being
        written now or was left by a crash (and removed when the spool was opened)."""
        entries = []
        for name in os.listdir(self.directory):
            if match := ENTRY_NAME.match(name):
                entries.append(Entry(int(match.group(1)), match.group(2), self.directory / name))
        return sorted(entries)

    def read(self, entry: Entry) -> bytes | None:
        """The batch's body, or None when it is not JSON (damaged outside rlab): it is then set
        aside as `.corrupt` for a person to look at, and never sent."""
        body = entry.path.read_bytes()
        try:
            json.loads(body)
        except ValueError:
            log.warning("%s is not JSON; set aside as .corrupt and not sent", entry.path)
            entry.path.replace(entry.path.with_name(entry.path.name + ".corrupt"))
            return None
        return body

    def ack(self, entry: Entry) -> None:
        """The server has answered for this batch for good: forget it."""
        entry.path.unlink(missing_ok=True)
        self._sync_directory()

    def __len__(self) -> int:
        return sum(1 for name in os.listdir(self.directory) if ENTRY_NAME.match(name))

    def _sync_directory(self) -> None:
        """A rename or unlink is durable only once the folder itself is on disk."""
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
