"""The run page's event stream, read over HTTP from the real ASGI server (uvicorn), with the
rows written by this test process or by a real Celery worker training the tiny model."""

from __future__ import annotations

import codecs
import http.client
import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import tiny_run_config
from tests.stack import start_web, start_worker
from webapp.experiments.services import experiment_create
from webapp.live.live_feed import (
    ROLLOUTS_PANEL_SECONDS,
    Batch,
    Cursor,
    RunFeed,
    RunState,
    current_cursor,
    read_batch,
)
from webapp.runs import ingestion, services
from webapp.runs.models import Run, RunStatus
from webapp.teams import services as services_teams
from webapp.teams.models import Membership

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

_LINE_END = re.compile(r"\r\n|\n|\r(?=.)", re.DOTALL)


@dataclass
class Event:
    id: str
    name: str
    data: str


class Stream:
    """A server-sent event stream parsed as a browser parses it: the HTML standard's event stream
    interpretation, where a line ends at CR LF, at a lone LF or at a lone CR."""

    def __init__(self, base_url: str, path: str, cookie: str, last_event_id: str | None = None):
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Cookie": cookie, "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()
        self.last_event_id = ""  # the browser's last event ID buffer: kept across events
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._text = ""
        self._started = False

    def _next_line(self, deadline: float) -> str | None:
        while True:
            # A CR at the end of what has arrived may be the first half of CR LF: wait for more.
            match = _LINE_END.search(self._text)
            if match:
                line, self._text = self._text[:match.start()], self._text[match.end():]
                return line
            if time.monotonic() > deadline:  # comments alone (keepalives) kept it going
                raise AssertionError("no event in time")
            chunk = self.response.read1(65536)
            if not chunk:
                return None  # the stream ended; an unfinished event is dropped, as a browser does
            self._text += self._decoder.decode(chunk)
            if not self._started and self._text:
                self._text = self._text.removeprefix("\ufeff")
                self._started = True

    def next_event(self, timeout: float = 60) -> Event | None:
        """The next event dispatched (blocks of comments or `retry:` alone dispatch none); None
        at the end of the stream."""
        deadline = time.monotonic() + timeout
        data: list[str] = []
        name = ""
        while True:
            line = self._next_line(deadline)
            if line is None:
                return None
            if not line:
                if data:
                    return Event(id=self.last_event_id, name=name or "message",
                                 data="\n".join(data))
                name = ""
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id" and "\0" not in value:
                self.last_event_id = value

    def events_until(self, predicate, timeout: float = 60) -> list[Event]:
        """Events read until one satisfies `predicate` (included), or the stream ends."""
        deadline = time.monotonic() + timeout
        events = []
        while time.monotonic() < deadline:
            event = self.next_event(deadline - time.monotonic())
            if event is None:
                return events
            events.append(event)
            if predicate(event):
                return events
        raise AssertionError(f"no such event within {timeout} s: {[e.name for e in events]}")

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def web(tmp_path):
    # Streams check every second, not every minute, that their user may still see the run.
    process, base_url = start_web(tmp_path, RLAB_STREAM_ACCESS_CHECK_SECONDS="1")
    yield base_url
    process.stop()


def _cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.fixture
def cookie(user) -> str:
    return _cookie(user)


@pytest.fixture
def running(experiment, user) -> Run:
    run = services.run_launch(experiment=experiment, user=user)
    services.run_claim(run_id=run.pk, worker="w")
    services.run_mark_running(run_id=run.pk, device="cpu", total_steps=3)
    return Run.objects.get(pk=run.pk)


def _metrics(run: Run, steps: range, key: str = "reward/mean") -> None:
    now = timezone.now()
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=step / 10,
                              wall_time=now + timedelta(seconds=step)) for step in steps])


def _steps(events: list[Event], key: str = "reward/mean") -> list[int]:
    return [step for e in events if e.name == "metrics"
            for step in json.loads(e.data)["series"].get(key, [[]])[0]]


def test_new_points_log_lines_and_status_arrive_then_the_stream_ends(web, cookie, running):
    stream = Stream(web, reverse("live:events", args=[running.pk]), cookie)
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    first = stream.next_event()
    assert first.name == "status" and "running" in first.data  # the state, on connecting

    _metrics(running, range(1, 4))
    ingestion.logs_append(run_id=running.pk, lines=[
        (timezone.now(), "info", "trainer", "step 3 <b>done</b>")])
    events = stream.events_until(lambda e: e.name == "log")
    events += [] if _steps(events) == [1, 2, 3] else stream.events_until(
        lambda e: e.name == "metrics")
    assert _steps(events) == [1, 2, 3]
    series = next(json.loads(e.data)["series"] for e in events if e.name == "metrics")
    assert series["reward/mean"][1] == pytest.approx([0.1, 0.2, 0.3])
    assert len(series["reward/mean"][2]) == 3  # wall times, for the time axis
    log = next(e for e in events if e.name == "log")
    assert "step 3 &lt;b&gt;done&lt;/b&gt;" in log.data  # model and log text escaped

    services.run_succeed(run_id=running.pk)
    events = stream.events_until(lambda e: e.name == "end")
    assert [e.name for e in events][-2:] == ["status", "end"]
    assert "succeeded" in events[-2].data
    assert stream.next_event() is None  # the server closed the stream
    stream.close()


def test_a_reconnect_resumes_after_the_last_event_id(web, cookie, running):
    _metrics(running, range(1, 3))
    path = reverse("live:events", args=[running.pk])
    # A page rendered before any point: everything after its cursor comes, once.
    stream = Stream(web, f"{path}?last_event_id={Cursor().encode()}", cookie)
    events = stream.events_until(lambda e: e.name == "metrics")
    assert _steps(events) == [1, 2]
    last_id = events[-1].id
    stream.close()

    _metrics(running, range(3, 6))
    ingestion.logs_append(run_id=running.pk, lines=[(timezone.now(), "info", "trainer", "x")])
    stream = Stream(web, path, cookie, last_event_id=last_id)  # as EventSource reconnects
    events = stream.events_until(lambda e: e.name == "log")
    assert _steps(events) == [3, 4, 5]  # 1 and 2 are not sent again
    stream.close()


def test_a_stream_without_cursor_starts_from_now(web, cookie, running):
    _metrics(running, range(1, 3))
    stream = Stream(web, reverse("live:events", args=[running.pk]), cookie)
    _metrics(running, range(3, 4))
    events = stream.events_until(lambda e: e.name == "metrics")
    assert _steps(events) == [3]
    stream.close()


def test_a_finished_run_streams_its_state_and_ends(web, cookie, running):
    services.run_succeed(run_id=running.pk)
    stream = Stream(web, reverse("live:events", args=[running.pk]), cookie)
    events = stream.events_until(lambda e: e.name == "end", timeout=10)
    assert [e.name for e in events] == ["status", "end"]
    stream.close()


def test_the_stream_needs_a_sign_in_and_a_team_role(web, running, other_user):
    path = reverse("live:events", args=[running.pk])
    anonymous = Stream(web, path, cookie="")
    assert anonymous.response.status == 302
    outsider = Stream(web, path, _cookie(other_user))
    assert outsider.response.status == 404


# A carriage return ends a line for a browser. Left inside a data line, this text would end the
# event there, then send a forged `end` (closing the page's stream) and a forged event id (a
# reconnect would skip everything before it).
FORGED_ID = "999999.999999.999999.999999"
FRAMING_PAYLOAD = f"ok\r\revent: end\rdata: y\r\rid: {FORGED_ID}\r\n\r\nafter\r"


def test_carriage_returns_in_a_completion_or_log_line_stay_inside_their_event(web, cookie,
                                                                              running):
    stream = Stream(web, reverse("live:events", args=[running.pk]), cookie)
    assert stream.next_event().name == "status"
    ingestion.rollouts_ingest(run_id=running.pk, step=1, items=[
        {"prompt": "p", "completion": FRAMING_PAYLOAD, "reward": 1.0}])
    ingestion.logs_append(run_id=running.pk, lines=[
        (timezone.now(), "info", "trainer", FRAMING_PAYLOAD)])
    events = stream.events_until(lambda e: e.name == "log", timeout=20)
    assert [e.name for e in events] == ["rollouts", "log"]
    # The text arrives whole, its line ends as LF (how a browser joins data lines).
    shown = "ok\n\nevent: end\ndata: y\n\nid: " + FORGED_ID + "\n\nafter\n"
    assert all(shown in e.data for e in events)
    assert all(Cursor.parse(e.id) is not None and e.id != FORGED_ID for e in events)

    services.run_succeed(run_id=running.pk)
    events = stream.events_until(lambda e: e.name == "end", timeout=20)
    assert [e.name for e in events] == ["status", "end"]  # the run's own end, and only it
    assert stream.last_event_id != FORGED_ID
    assert stream.next_event() is None
    stream.close()


def test_a_stream_ends_soon_after_its_user_leaves_the_team(web, running, team, user,
                                                           member_of):
    viewer = member_of("viewer")
    stream = Stream(web, reverse("live:events", args=[running.pk]), _cookie(viewer))
    assert stream.next_event().name == "status"
    time.sleep(2.5)  # two access checks pass while the viewer is still in the team
    _metrics(running, range(1, 2))
    assert _steps(stream.events_until(lambda e: e.name == "metrics", timeout=10)) == [1]

    membership = Membership.objects.get(team=team, user=viewer)
    services_teams.membership_remove(team=team, actor=user, membership=membership)
    removed = time.monotonic()
    events = stream.events_until(lambda e: e.name == "end", timeout=10)
    assert events[-1].name == "end" and time.monotonic() - removed < 5
    assert stream.next_event() is None  # the server closed the stream
    stream.close()
    _metrics(running, range(2, 3))
    again = Stream(web, reverse("live:events", args=[running.pk]), _cookie(viewer))
    assert again.response.status == 404  # as the browser's reconnect would find


def test_cursor_reads_only_what_came_after_it(running):
    _metrics(running, range(1, 3))
    middle = current_cursor(running.pk)
    _metrics(running, range(3, 5))
    ingestion.rollouts_ingest(run_id=running.pk, step=4, items=[{"prompt": "p", "completion": "c",
                                                                 "reward": 1.0}])
    batch = read_batch(running.pk, middle, last_state=None)
    assert [step for _, _, step, _, _ in batch.metrics] == [3, 4]
    assert batch.new_rollouts and not batch.new_checkpoints
    assert batch.state.status == RunStatus.RUNNING
    again = read_batch(running.pk, batch.end, last_state=batch.state)
    assert again.empty  # nothing new, and the state did not change
    assert Cursor.parse(batch.end.encode()) == batch.end


def test_a_real_worker_run_streams_every_step_live(web, cookie, project, user, tiny_model,
                                                   tmp_path):
    worker = start_worker(tmp_path, RLAB_RUN_DIR=str(tmp_path / "runs"))
    try:
        experiment = experiment_create(project=project, author=user, name="live", description="",
                                       config=tiny_run_config(tiny_model, max_steps=30))
        run = services.run_launch(experiment=experiment, user=user)
        stream = Stream(web, reverse("live:events", args=[run.pk]), cookie)
        events = stream.events_until(lambda e: e.name == "end", timeout=180)
        stream.close()
    finally:
        worker.stop()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert _steps(events) == list(range(1, 31))  # each step once, in order
    statuses = [e.data for e in events if e.name == "status"]
    assert any("running" in s for s in statuses) and "succeeded" in statuses[-1]
    # the points came while the run was still going (30 steps take seconds, the feed reads
    # every second): a status event of the running run followed the first of them
    first_points = next(i for i, e in enumerate(events) if e.name == "metrics")
    assert any(e.name == "status" and "running" in e.data for e in events[first_points:])
    logs = "".join(e.data for e in events if e.name == "log")
    assert "rollouts by transformers" in logs
    assert any(e.name == "rollouts" and "Latest rollouts" in e.data for e in events)
    assert any(e.name == "checkpoints" for e in events)


def _rollouts_batch(start: int, end: int, status: str | None = None) -> Batch:
    state = None if status is None else RunState(status, 1, 2, "cpu", "w", "", True)
    return Batch(start=Cursor(rollout=start), end=Cursor(rollout=end), new_rollouts=True,
                 state=state)


def test_the_rollouts_panel_is_rendered_again_at_most_every_few_seconds():
    feed = RunFeed(1, Cursor(), None)
    first = feed._paced(_rollouts_batch(0, 16))
    assert first.new_rollouts and first.end.rollout == 16
    soon = feed._paced(_rollouts_batch(16, 32))
    assert not soon.new_rollouts and soon.end.rollout == 16, "left for a later read"
    feed.rollouts_shown_at -= ROLLOUTS_PANEL_SECONDS
    later = feed._paced(_rollouts_batch(16, 48))
    assert later.new_rollouts and later.end.rollout == 48


def test_a_run_that_ended_sends_its_last_rollouts_at_once():
    feed = RunFeed(1, Cursor(), None)
    feed._paced(_rollouts_batch(0, 16))
    last = feed._paced(_rollouts_batch(16, 32, status="succeeded"))
    assert last.new_rollouts and last.end.rollout == 32
