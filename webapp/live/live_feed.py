"""Live run events for open run pages: one database poller per run per web process, fanned out
to every page that watches the run.

A page's event stream (webapp.live.stream) subscribes to its run's `RunFeed`. The feed reads
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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone as dt_timezone
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection, connections
from django.db.models import Max

from webapp.common.inputs import BIGINT_MAX
from webapp.runs.models import TERMINAL_STATUSES, Checkpoint, LogLine, MetricPoint, Rollout, Run

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # events reach pages within this plus a render
# The rollouts panel shows a run's newest completions, re-rendered for every page at most this
# often: a script logging a batch each second would otherwise cost a render a second per run.
ROLLOUTS_PANEL_SECONDS = 3.0
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


def off_the_loop(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`func` (which reads the database) as a coroutine function, run in a thread of asgiref's
    pool with its connection released after. Not thread-sensitive: the feeds' reads and the
    pages' renders would otherwise all queue for the one thread that such calls share outside a
    request, and under load a page would wait seconds behind the others."""
    return sync_to_async(releasing_connection(func), thread_sensitive=False)


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
    MAX_ROWS_PER_READ and 1,000 a read: the batch's `end` says how far it got.

    Three statements of plain SQL: a feed reads every second for as long as a page watches, and
    compiling the same three ORM queries cost several times what Postgres spends on them."""
    until = until or Cursor(metric=BIGINT_MAX, log=BIGINT_MAX)
    with connection.cursor() as cursor:
        cursor.execute(_METRICS_SQL, [run_id, start.metric, until.metric, MAX_ROWS_PER_READ])
        metrics = [(pk, key, step, value, _aware(wall).timestamp())
                   for pk, key, step, value, wall in cursor.fetchall()]
        cursor.execute(_LOGS_SQL, [run_id, start.log, until.log])
        logs = [LogLine(pk=pk, run_id=run_id, time=_aware(time), level=level, source=source,
                        message=message)
                for pk, time, level, source, message in cursor.fetchall()]
        cursor.execute(_STATE_SQL, [run_id, start.rollout, run_id, start.checkpoint, run_id])
        row = cursor.fetchone()
    if row is None:
        state, rollout_top, checkpoint_top = None, None, None
    else:
        *fields, enqueued_at, rollout_top, checkpoint_top = row
        state = RunState(*fields, enqueued=enqueued_at is not None)
    end = Cursor(metric=metrics[-1][0] if metrics else start.metric,
                 log=logs[-1].pk if logs else start.log,
                 rollout=rollout_top or start.rollout,
                 checkpoint=checkpoint_top or start.checkpoint)
    return Batch(start=start, end=end, metrics=metrics, logs=logs,
                 new_rollouts=rollout_top is not None, new_checkpoints=checkpoint_top is not None,
                 state=state if state != last_state else None)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(model, *names: str) -> str:
    return ", ".join(connection.ops.quote_name(model._meta.get_field(name).column)
                     for name in names)


_METRICS_SQL = (f"SELECT {_columns(MetricPoint, 'id', 'key', 'step', 'value', 'wall_time')} "
                f"FROM {_table(MetricPoint)} WHERE run_id = %s AND id > %s AND id <= %s "
                f"ORDER BY id LIMIT %s")
_LOGS_SQL = (f"SELECT {_columns(LogLine, 'id', 'time', 'level', 'source', 'message')} "
             f"FROM {_table(LogLine)} WHERE run_id = %s AND id > %s AND id <= %s "
             f"ORDER BY id LIMIT 1000")
_STATE_COLUMNS = _columns(Run, "status", "progress_step", "progress_total", "device", "worker",
                          "error_message", "enqueued_at")
_STATE_SQL = (f"SELECT {_STATE_COLUMNS}, "
              f"(SELECT max(id) FROM {_table(Rollout)} WHERE run_id = %s AND id > %s), "
              f"(SELECT max(id) FROM {_table(Checkpoint)} WHERE run_id = %s AND id > %s) "
              f"FROM {_table(Run)} WHERE id = %s")


def _aware(value: datetime | str) -> datetime:
    """A time read by plain SQL: Postgres gives an aware datetime; SQLite, the UTC time as
    naive text or a naive datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt_timezone.utc)


class RunFeed:
    """Reads one run's new rows once a second while anyone watches, and queues each non-empty
    batch for every subscriber. Stops when the last subscriber leaves or after the run ended."""

    def __init__(self, run_id: int, cursor: Cursor, state: RunState | None):
        self.run_id = run_id
        self.cursor = cursor
        self.state = state
        self.subscribers: set[asyncio.Queue[Batch | None]] = set()
        self.task: asyncio.Task | None = None
        self.rollouts_shown_at = 0.0  # time.monotonic() of the last batch with new rollouts

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
                    batch = await _read_fresh(self.run_id, self.cursor, self.state)
                except DatabaseError as exc:  # a restarting database: try again next second
                    logger.warning("live feed of run %s cannot read: %s", self.run_id, exc)
                    continue
                batch = self._paced(batch)
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

    def _paced(self, batch: Batch) -> Batch:
        """The batch, its new rollouts left for a later read when the panel was rendered less
        than ROLLOUTS_PANEL_SECONDS ago (unless the run ended: its last rows go out now)."""
        if not batch.new_rollouts:
            return batch
        now = time.monotonic()
        ended = batch.state is not None and batch.state.is_terminal
        if now - self.rollouts_shown_at >= ROLLOUTS_PANEL_SECONDS or ended:
            self.rollouts_shown_at = now
            return batch
        return replace(batch, new_rollouts=False,
                       end=replace(batch.end, rollout=batch.start.rollout))


_read_fresh = off_the_loop(read_batch)


_feeds: dict[int, RunFeed] = {}


async def feed_for(run_id: int) -> RunFeed:
    """The run's feed in this process, started on first use."""
    feed = _feeds.get(run_id)
    if feed is None:
        cursor, state = await off_the_loop(_start_point)(run_id)
        feed = _feeds.get(run_id)  # another page may have started it meanwhile
        if feed is None:
            feed = _feeds[run_id] = RunFeed(run_id, cursor, state)
    return feed


def ensure_running(feed: RunFeed) -> None:
    if feed.task is None or feed.task.done():
        feed.task = asyncio.get_running_loop().create_task(feed.run())


def _start_point(run_id: int) -> tuple[Cursor, RunState | None]:
    batch = read_batch(run_id, current_cursor(run_id), None)
    return batch.end, batch.state


def catch_up(run_id: int, start: Cursor, until: Cursor) -> Batch:
    """A page's rows after `start`, up to `until` (where the feed's queued batches begin), and
    the current state. Called until its `end` reaches `until`."""
    return read_batch(run_id, start, None, until=until)


def caught_up(cursor: Cursor, until: Cursor) -> bool:
    return cursor.metric >= until.metric and cursor.log >= until.log
