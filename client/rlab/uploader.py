"""Delivery of a run's spool: oldest batch first, each retried until the server answers for it.

Delivery is at least once: a batch is deleted only after the server acknowledged it, so a batch
the server stored but whose answer was lost (a dropped connection, a crash before the delete) is
sent again. The server makes that harmless: metric points are unique per (run, key, step) and
rollouts per (run, step, group, sample index), and a replay changes nothing. At-least-once
delivery to an idempotent receiver is exactly-once in effect: every point is stored once.

A batch the server refuses for good (a 4xx other than a retry) is dropped and recorded in
`refused`. A 409 for a run the server took for crashed (its script was cut off for longer than
the server waits) is no refusal: a heartbeat makes the run run again, and the batch is sent
again."""

from __future__ import annotations

import logging
import threading
import time

from rlab.client import Backoff, Client, Rejected, Transient
from rlab.spool import Entry, Spool

log = logging.getLogger("rlab")


class Uploader:
    def __init__(self, *, client: Client, spool: Spool, run_id: int, backoff: Backoff):
        self.client, self.spool, self.run_id, self.backoff = client, spool, run_id, backoff
        self.refused: list[str] = []
        self._answered = time.monotonic()  # the last answer from the server
        self._beat_tried = 0.0  # the last heartbeat sent, answered or not

    def drain(self, *, stop: threading.Event) -> bool:
        """Send every batch in the spool, in order. True once it is empty; False when `stop`
        was set first."""
        while entries := self.spool.pending():
            for entry in entries:
                if not self._deliver(entry, stop):
                    return False
        return True

    def heartbeat_due(self, interval: float) -> bool:
        """Nothing was heard from the server, nor a heartbeat tried, for `interval` seconds."""
        return time.monotonic() - max(self._answered, self._beat_tried) >= interval

    def heartbeat(self) -> bool:
        """Tell the server the run's script is alive (a crashed run runs again). True if the run
        is running now; False if it has ended otherwise or the server cannot be reached."""
        self._beat_tried = time.monotonic()
        try:
            self.client.post(f"/runs/{self.run_id}/heartbeat", b"{}")
        except Transient:
            return False
        except Rejected:
            self._answered = time.monotonic()
            return False  # the run's batches are refused too, and say why
        self._answered = time.monotonic()
        return True

    def _deliver(self, entry: Entry, stop: threading.Event) -> bool:
        body = self.spool.read(entry)
        if body is None:
            return True
        revived = False
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
                continue
            except Rejected as exc:
                self._answered = time.monotonic()
                if exc.status == 409 and entry.kind != "finish" and not revived:
                    revived = True
                    if self.heartbeat():
                        continue
                if entry.kind == "finish" and exc.status == 409:
                    log.info("run %s had already ended", self.run_id)
                else:
                    self.refused.append(f"a {entry.kind} batch ({entry.path.name}): {exc}")
                    log.warning("run %s: the server refused a %s batch for good, so it is "
                                "dropped: %s", self.run_id, entry.kind, exc)
            else:
                self._answered = time.monotonic()
                if self.backoff.failures:
                    log.warning("run %s: %s answers again", self.run_id, self.client.url)
            self.backoff.reset()
            self.spool.ack(entry)
            return True
