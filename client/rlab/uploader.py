"""Delivery of a run's spool: oldest batch first, each retried until the server answers for it.

Delivery is at least once: a batch is deleted only after the server acknowledged it, so a batch
the server stored but whose answer was lost (a dropped connection, a crash before the delete) is
sent again. The server makes that harmless: metric points are unique per (run, key, step) and
rollouts per (run, step, group, sample index), and a replay keeps what is stored. At-least-once
delivery to an idempotent receiver is exactly-once in effect: every point is stored once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rlab.client import Backoff, Client, Rejected, Transient
from rlab.spool import Entry, Spool

log = logging.getLogger("rlab")


class Uploader:
    def __init__(self, *, client: Client, spool: Spool, run_id: int, backoff: Backoff):
        self.client, self.spool, self.run_id, self.backoff = client, spool, run_id, backoff

    def drain(self, *, stop: threading.Event, between: Callable[[], None] = lambda: None) -> bool:
        """Send every batch in the spool, in order. True once it is empty; False when `stop`
        was set first. `between` runs after each batch and each failed try (the run spools
        what it buffered meanwhile, so memory stays bounded while the server is away)."""
        while entries := self.spool.pending():
            for entry in entries:
                if not self._deliver(entry, stop, between):
                    return False
                between()
        return True

    def _deliver(self, entry: Entry, stop: threading.Event, between: Callable[[], None]) -> bool:
        body = self.spool.read(entry)
        if body is None:
            return True
        while True:
            try:
                self.client.post(f"/runs/{self.run_id}/{entry.kind}", body)
            except Transient as exc:
                if self.backoff.failures == 0:
                    log.warning("run %s: cannot reach %s (%s); retrying, with the batches "
                                "kept in %s", self.run_id, self.client.url, exc,
                                self.spool.directory)
                if stop.wait(self.backoff.next_delay()):
                    return False
                between()
                continue
            except Rejected as exc:
                if entry.kind == "finish" and exc.status == 409:
                    log.info("run %s had already ended", self.run_id)
                else:
                    log.warning("run %s: the server refused a %s batch for good, so it is "
                                "dropped: %s", self.run_id, entry.kind, exc)
            else:
                if self.backoff.failures:
                    log.warning("run %s: %s answers again", self.run_id, self.client.url)
            self.backoff.reset()
            self.spool.ack(entry)
            return True
