"""Live run events for open run pages: one database poller per run per web process, fanned out
to every page that watches the run.

A page's event stream (webapp.runs.stream) subscribes to its run's `RunFeed`. The feed reads
what the worker recorded since its last read (metric points, log lines, checkpoints, a new step
of rollouts, a change of the run's status) once a second, whoever watches, and hands each
subscriber the same `Batch`; so fifty open pages cost the database what one does. Rows are
identified by their primary keys, which only grow: a `Cursor` (the highest id of each kind a
page has) is the stream's event id, from which a reconnecting page resumes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections
from django.db.models import Max

from webapp.runs.models import TERMINAL_STATUSES, Checkpoint, LogLine, MetricPoint, Rollout, Run

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # events reach pages within this plus a render
MAX_ROWS_PER_READ = 20_000  # metric points per read; a backlog drains over several reads
_CURSOR = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")

P = ParamSpec("P")
R = TypeVar("R")


def releasing_connection(func: Callable[P, R]) -> Callable[P, R]:
    """`func`, then this thread's database connection closed. A feed and an open page wait
    between their reads for as long as the page stays open, and must not hold one of Postgres's
    connections meanwhile (fifty open pages would hold fifty). Their next read opens a new one,
    so a connection that a database restart broke is never used again either."""
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return wrapper


@dataclass(frozen=True)
class Cursor:
    """The highest primary key of each kind of row that a page has been sent."""

    metric: int = 0
    log: int = 0
    rollout: int = 0
    checkpoint: int = 0

    def encode(self) -> str:
        return f"{self.metric}.{self.log}.{self.rollout}.{self.checkpoint}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        """The cursor of an event id, or None for anything else (a stale or forged id).

        >>> Cursor.parse("12.3.40.1")
        Cursor(metric=12, log=3, rollout=40, checkpoint=1)
        >>> Cursor.parse("12.3") is None
        True
        """
        match = _CURSOR.match((text or "").strip())
        return cls(*(int(part) for part in match.groups())) if match else None


def current_cursor(run_id: int) -> Cursor:
    """The cursor of everything recorded for the run so far: what a freshly rendered run page
    shows, so its stream starts after it."""
    def top(model) -> int:
        return model.objects.filter(run_id=run_id).aggregate(top=Max("pk"))["top"] or 0

    return Cursor(metric=top(MetricPoint), log=top(LogLine), rollout=top(Rollout),
                  checkpoint=top(Checkpoint))


@dataclass(frozen=True)
class RunState:
    """What the run page's status panel shows; a change of it is a `status` event."""

    status: str
    progress_step: int
    progress_total: int
    device: str
    worker: str
    error_message: str
    enqueued: bool  # the broker accepted it (until then the page says it waits for the broker)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass
class Batch:
    """What was recorded between two cursors: the rows to send, and which panels changed."""

    start: Cursor
    end: Cursor
    metrics: list[tuple[int, str, int, float, float]] = field(default_factory=list)
    # (id, key, step, value, wall time as Unix seconds)
    logs: list[LogLine] = field(default_factory=list)
    new_rollouts: bool = False
    new_checkpoints: bool = False
    state: RunState | None = None  # set when it changed (always in a catch-up read)
    # Rendered once per permission variant (can edit or not) for every page (stream.py): the
    # re-rendered panels, and the whole text of the events for pages in step with the feed.
    panels: dict[bool, asyncio.Future] = field(default_factory=dict)  # of {panel: html}
    events: dict[bool, asyncio.Future] = field(default_factory=dict)  # of (text, cursor after)

    @property
    def changed_panels(self) -> tuple[str, ...]:
        """The run page's panels (partials) to render again for this batch."""
        return tuple(name for name, changed in (("live", self.state is not None),
                                                ("rollouts", self.new_rollouts),
                                                ("checkpoints", self.new_checkpoints))
                     if changed)

    @property
    def empty(self) -> bool:
        return not (self.metrics or self.logs or self.changed_panels)


def read_batch(run_id: int, start: Cursor, last_state: RunState | None,
               until: Cursor | None = None) -> Batch:
    """What was recorded for the run after `start` (up to `until`, when given); the state when
    it differs from `last_state`. Metric points and log lines come in id order, at most
    MAX_ROWS_PER_READ and 1,000 a read: the batch's `end` says how far it got."""
    metrics = MetricPoint.objects.filter(run_id=run_id, pk__gt=start.metric)
    logs = LogLine.objects.filter(run_id=run_id, pk__gt=start.log)
    if until is not None:
        metrics = metrics.filter(pk__lte=until.metric)
        logs = logs.filter(pk__lte=until.log)
    metrics = list(metrics.order_by("pk").values_list("pk", "key", "step", "value", "wall_time")
                   [:MAX_ROWS_PER_READ])
    logs = list(logs.order_by("pk")[:1000])
    rollout_top = (Rollout.objects.filter(run_id=run_id, pk__gt=start.rollout)
                   .aggregate(top=Max("pk"))["top"])
    checkpoint_top = (Checkpoint.objects.filter(run_id=run_id, pk__gt=start.checkpoint)
                      .aggregate(top=Max("pk"))["top"])
    row = (Run.objects.filter(pk=run_id)
           .values_list("status", "progress_step", "progress_total", "device", "worker",
                        "error_message", "enqueued_at").first())
    state = RunState(*row[:-1], enqueued=row[-1] is not None) if row else None
    end = Cursor(metric=metrics[-1][0] if metrics else start.metric,
                 log=logs[-1].pk if logs else start.log,
                 rollout=rollout_top or start.rollout,
                 checkpoint=checkpoint_top or start.checkpoint)
    return Batch(start=start, end=end,
                 metrics=[(pk, key, step, value, wall.timestamp())
                          for pk, key, step, value, wall in metrics],
                 logs=logs, new_rollouts=rollout_top is not None,
                 new_checkpoints=checkpoint_top is not None,
                 state=state if state != last_state else None)


class RunFeed:
    """Reads one run's new rows once a second while anyone watches, and queues each non-empty
    batch for every subscriber. Stops when the last subscriber leaves or after the run ended."""

    def __init__(self, run_id: int, cursor: Cursor, state: RunState | None):
        self.run_id = run_id
        self.cursor = cursor
        self.state = state
        self.subscribers: set[asyncio.Queue[Batch | None]] = set()
        self.task: asyncio.Task | None = None

    def subscribe(self) -> tuple[asyncio.Queue[Batch | None], Cursor]:
        """A queue of the batches after the returned cursor (None: the feed ended)."""
        queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self.subscribers.add(queue)
        return queue, self.cursor

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.subscribers.discard(queue)

    async def run(self) -> None:
        try:
            while self.subscribers:
                await asyncio.sleep(POLL_SECONDS)
                try:
                    batch = await sync_to_async(_read_fresh)(self.run_id, self.cursor,
                                                             self.state)
                except DatabaseError as exc:  # a restarting database: try again next second
                    logger.warning("live feed of run %s cannot read: %s", self.run_id, exc)
                    continue
                self.cursor = batch.end
                if batch.state is not None:
                    self.state = batch.state
                if not batch.empty:
                    for queue in self.subscribers:
                        queue.put_nowait(batch)
                if self.state is None or self.state.is_terminal:
                    break  # the final batch (status, last points) is out
        finally:
            for queue in self.subscribers:
                queue.put_nowait(None)
            _feeds.pop(self.run_id, None)


_read_fresh = releasing_connection(read_batch)


_feeds: dict[int, RunFeed] = {}


async def feed_for(run_id: int) -> RunFeed:
    """The run's feed in this process, started on first use."""
    feed = _feeds.get(run_id)
    if feed is None:
        cursor, state = await sync_to_async(_start_point)(run_id)
        feed = _feeds.get(run_id)  # another page may have started it meanwhile
        if feed is None:
            feed = _feeds[run_id] = RunFeed(run_id, cursor, state)
    return feed


def ensure_running(feed: RunFeed) -> None:
    if feed.task is None or feed.task.done():
        feed.task = asyncio.get_running_loop().create_task(feed.run())


@releasing_connection
def _start_point(run_id: int) -> tuple[Cursor, RunState | None]:
    batch = read_batch(run_id, current_cursor(run_id), None)
    return batch.end, batch.state


@releasing_connection
def catch_up(run_id: int, start: Cursor, until: Cursor) -> Batch:
    """A page's rows after `start`, up to `until` (where the feed's queued batches begin), and
    the current state. Called until its `end` reaches `until`."""
    return read_batch(run_id, start, None, until=until)


def caught_up(cursor: Cursor, until: Cursor) -> bool:
    return cursor.metric >= until.metric and cursor.log >= until.log
