"""The run page's event stream: server-sent events from an async view (served by uvicorn).

Each event is named for the panel it updates (templates/live/run_live.html, through the htmx
SSE extension): `metrics` (JSON of the new points, for the charts), `log` (new log lines,
appended), `status`, `rollouts` and `checkpoints` (the panel re-rendered), and `end` when the run
has finished or the user may no longer see it, which closes the stream. Every event's id is the
page's cursor (webapp.live.live_feed.Cursor): a browser that reconnects sends it back as
Last-Event-ID, and the stream resumes after it, with nothing lost and nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from webapp.live.live_feed import (
    Batch,
    Cursor,
    catch_up,
    caught_up,
    current_cursor,
    ensure_running,
    feed_for,
    off_the_loop,
    releasing_connection,
)
from webapp.live.panels import live_context
from webapp.runs import selectors

KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies open and finds dead clients
RETRY_MS = 2000  # the browser's reconnect delay after a dropped connection


@login_required
@require_GET
async def run_events(request: HttpRequest, run_id: int) -> StreamingHttpResponse:
    user = await request.auser()
    # In the request's own thread, which read the session and the user: its connection goes back
    # after this check, not when the stream ends, which may be hours away.
    run = await sync_to_async(releasing_connection(selectors.get_run_for_user))(user, run_id)
    # The browser's own reconnect sends Last-Event-ID; a new EventSource (htmx reconnecting after
    # an error) carries the cursor in the URL, which the page keeps current (live.js).
    cursor = (Cursor.parse(request.headers.get("Last-Event-ID"))
              or Cursor.parse(request.GET.get("last_event_id")))
    if cursor is None:  # no cursor: start from now, as a freshly rendered page would
        cursor = await off_the_loop(current_cursor)(run.pk)
    response = StreamingHttpResponse(_events(run, user, cursor),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through at once
    return response


async def _events(run, user, cursor: Cursor) -> AsyncIterator[str]:
    feed = await feed_for(run.pk)
    queue, feed_start = feed.subscribe()
    ensure_running(feed)
    renderer = _Renderer(run, user)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:  # what this page missed, up to where the feed's batches begin
            batch = await off_the_loop(catch_up)(run.pk, cursor, feed_start)
            text, cursor = await renderer.render(batch, cursor)
            yield text
            if caught_up(cursor, feed_start):
                break
        if batch.state is not None and batch.state.is_terminal:
            yield _event("end", "", cursor)
            return
        interval = settings.RLAB_STREAM_ACCESS_CHECK_SECONDS
        next_check = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= next_check:
                # An open stream outlives the check made when it opened: a user removed from
                # the team (or deactivated) stops receiving within `interval`. "end" closes
                # the page's stream for good; a reconnect would get 404.
                if not await off_the_loop(_may_watch)(run.pk, user.pk):
                    yield _event("end", "", cursor)
                    return
                renderer.can_edit = None  # a changed role counts from the next batch
                next_check = now + interval
            try:
                batch = await asyncio.wait_for(queue.get(),
                                               min(KEEPALIVE_SECONDS, next_check - now))
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if batch is None:  # the run finished: its last batch came before
                yield _event("end", "", cursor)
                return
            text, cursor = await renderer.render(batch, cursor)
            if text:
                yield text
    finally:
        feed.unsubscribe(queue)


class _Renderer:
    """Turns batches into one page's events. What pages share is rendered once per batch and
    permission variant (with or without the cancel and resume buttons): the re-rendered panels,
    and the whole text for pages in step with the feed, which is nearly all of them."""

    def __init__(self, run, user):
        self.run = run
        self.user = user
        self.can_edit: bool | None = None

    async def render(self, batch: Batch, cursor: Cursor) -> tuple[str, Cursor]:
        """The events of what in `batch` lies after `cursor`, and the cursor after them."""
        if self.can_edit is None:
            self.can_edit = await off_the_loop(selectors.can_edit_run)(self.run, self.user)
        if cursor != batch.start:  # catching up, or ahead of the feed: this page's own text
            return await self._render(batch, cursor)
        return await _once(batch.events, self.can_edit, lambda: self._render(batch, cursor))

    async def _render(self, batch: Batch, cursor: Cursor) -> tuple[str, Cursor]:
        metrics = [m for m in batch.metrics if m[0] > cursor.metric]
        logs = [line for line in batch.logs if line.pk > cursor.log]
        after = Cursor(metric=max(cursor.metric, batch.end.metric),
                       log=max(cursor.log, batch.end.log),
                       rollout=max(cursor.rollout, batch.end.rollout),
                       checkpoint=max(cursor.checkpoint, batch.end.checkpoint))
        events = []
        if batch.changed_panels:
            panels = await _once(batch.panels, self.can_edit, lambda: off_the_loop(
                _render_panels)(self.run, self.user, self.can_edit, batch.changed_panels))
            if batch.state is not None:
                events.append(_event("status", panels["live"], after))
            if batch.new_rollouts and after.rollout > cursor.rollout:
                events.append(_event("rollouts", panels["rollouts"], after))
            if batch.new_checkpoints and after.checkpoint > cursor.checkpoint:
                events.append(_event("checkpoints", panels["checkpoints"], after))
        if metrics:
            series: dict[str, list[list[float]]] = {}
            for _, key, step, value, wall in metrics:
                points = series.setdefault(key, [[], [], []])
                points[0].append(step)
                points[1].append(value if math.isfinite(value) else None)  # JSON has no NaN
                points[2].append(round(wall, 3))
            events.append(_event("metrics", json.dumps({"series": series}), after))
        if logs:
            events.append(_event("log", render_to_string("live/run_live.html#log-lines",
                                                         {"log_lines": logs}), after))
        return "".join(events), after


async def _once(cache: dict, key, make: Callable[[], Awaitable]):
    """make()'s result, made by the first page that asks and awaited by the others meanwhile
    (they ask together: a batch reaches every page at once)."""
    if key not in cache:
        cache[key] = asyncio.ensure_future(make())
    return await cache[key]


def _may_watch(run_id: int, user_id: int) -> bool:
    """Whether the user may still open the run's page: an active account in its team."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and selectors.runs_for_user(user).filter(pk=run_id).exists()


def _render_panels(run, user, can_edit: bool, names: tuple[str, ...]) -> dict[str, str]:
    context = live_context(run, user, can_edit=can_edit, panels=names)
    return {name: render_to_string(f"live/run_live.html#{name}", context) for name in names}


# Where an event stream's lines end, for a browser: CR LF, a lone LF and a lone CR alike
# (str.splitlines() would also split at characters the stream format does not).
_LINE_END = re.compile(r"\r\n|\r|\n")


def _event(name: str, data: str, cursor: Cursor) -> str:
    """One server-sent event; each line of `data` on a `data:` line of its own. Every line end a
    browser knows is split on: a carriage return left inside a line (in a completion, a log line)
    would end it there, and what follows would be read as fields of the stream, even as a forged
    `event: end` or `id:`. The browser joins the data lines with LF."""
    lines = "".join(f"data: {line}\n" for line in _LINE_END.split(data))
    return f"id: {cursor.encode()}\nevent: {name}\n{lines}\n"
