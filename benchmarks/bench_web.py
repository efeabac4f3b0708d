"""Web benchmark (issue 5), run by `make bench-web`; it prints figures, it asserts nothing.

On Postgres, in a scratch database that it creates, fills with generated data and drops:

    page      the run page's first response, through uvicorn (target < 300 ms)
    charts    chart data for 20 metrics × 100k steps (target < 200 ms, the first request too:
              the one a user opening a run waits for)
    rollouts  rollout browser pages with filters over 1M rollouts (target < 200 ms)
    streams   the CPU that 50 open event streams on one run add, while the run logs every
              second (target < 10% of a core): the web server's and Postgres's CPU time with no
              stream open and with 50, over the same time, side by side
    group     a group chart of 10 seeds × 100k ragged steps: mean and band (std, and a
              bootstrap interval) over aligned buckets (target < 300 ms), and for information
              two such groups; the runs are running, so nothing comes from the cache that
              keeps ended runs' buckets
    stats     the statistics page for 2 groups × 10 seeds: mean, IQM, their bootstrap
              intervals, the difference and the probability of improvement (target < 1 s)
    table     the runs table of a project of 100k runs with 5 metric columns (one a mean of the
              last 10 points) and a setting: its first page (target < 300 ms); beside it, for
              information, the first page sorted by a metric, the next page, a status filter
              and the table grouped by config less seed

Requests go over HTTP to a real uvicorn process, signed in, as a browser's would; each figure is
the median of repeated requests after one warm-up (p90 beside it).

    python -m benchmarks.bench_web                      # everything (a few minutes)
    python -m benchmarks.bench_web --parts page,streams
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import urlencode, urlsplit

from benchmarks.scratch import ADMIN_URL, rlab_django, scratch_database

PARTS = ("page", "charts", "rollouts", "streams", "group", "stats", "table")
TARGETS_MS = {"page": 300, "charts": 200, "rollouts": 200, "group": 300, "stats": 1000,
              "table": 300}
STREAM_CPU_TARGET = 0.10  # of one core
DATABASE = "rlab_bench_web"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    with scratch_database(args.postgres, DATABASE) as database_url, rlab_django(database_url), \
            TemporaryDirectory(prefix="bench-web-") as scratch:
        _run(args, database_url, Path(scratch))
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_web",
                                     description="rlab's web targets on generated data.")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)} (default: all)")
    parser.add_argument("--postgres", default=ADMIN_URL,
                        help="a Postgres URL whose user may create databases "
                             f"(default {ADMIN_URL}); the scratch database is {DATABASE}")
    parser.add_argument("--repeat", type=int, help="requests per figure (default 20)")
    parser.add_argument("--streams", type=int, help="open event streams (default 50)")
    parser.add_argument("--stream-seconds", type=float,
                        help="length of each of the two stream windows (default 30)")
    parser.add_argument("--quick", action="store_true",
                        help="1/100 of the data and short stream windows: checks the script")
    args = parser.parse_args(argv)
    args.scale = 0.01 if args.quick else 1.0
    defaults = (3, 5, 5) if args.quick else (20, 50, 30)
    for name, default in zip(("repeat", "streams", "stream_seconds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return args


def _run(args: argparse.Namespace, database_url: str, scratch: Path) -> None:
    from benchmarks import web_data
    from tests.stack import Process, free_port
    from webapp.config.web_server import uvicorn_command

    print(f"rlab web benchmark: Postgres ({DATABASE}), uvicorn, {os.cpu_count()} cores")
    world = web_data.create_world()
    started = time.perf_counter()
    if "charts" in args.parts or "page" in args.parts:
        world.steps = int(100_000 * args.scale)
        web_data.fill_metrics(world.big_run, keys=20, steps=world.steps)
    if "rollouts" in args.parts or "page" in args.parts:
        web_data.fill_rollouts(world.big_run, rollouts=int(1_000_000 * args.scale),
                               group_size=8)
    if "group" in args.parts or "stats" in args.parts:
        world.group_steps = int(100_000 * args.scale)
        world.methods = web_data.fill_seed_groups(world, seeds=10, steps=world.group_steps)
    web_data.fill_log(world.big_run, lines=2_000)
    if "table" in args.parts:
        world.table_project = web_data.fill_table(world.user, runs=int(100_000 * args.scale))
    web_data.analyze()
    print(f"generated data in {time.perf_counter() - started:.0f} s: "
          f"{web_data.counts(world.big_run)}\n")

    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    web = Process("web", uvicorn_command(host="127.0.0.1", port=port, extra=["--no-access-log"]),
                  env, scratch)
    client = Client(f"http://127.0.0.1:{port}", web_data.session_cookie(world.user))
    client.wait_until_up(web)
    try:
        if "page" in args.parts:
            _report("run page, first response", client.timings(
                world.big_run.get_absolute_url(), args.repeat), TARGETS_MS["page"])
        if "charts" in args.parts:
            _part_charts(client, world, args.repeat)
        if "rollouts" in args.parts:
            _part_rollouts(client, world, args.repeat)
        if "streams" in args.parts:
            _part_streams(client, world, web, args)
        if "group" in args.parts:
            _part_group(client, world, args.repeat)
        if "stats" in args.parts:
            _part_stats(client, world, args.repeat)
        if "table" in args.parts:
            _part_table(client, world, args.repeat)
    finally:
        web.stop()


def _part_table(client: Client, world, repeat: int) -> None:
    """The runs table: its first page is the figure with a target; the others say what a
    sort by a metric, a next page (keyset), a filter and grouping cost on the same runs."""
    import re

    table = f"/projects/{world.table_project.pk}/runs/"
    runs = world.table_project.experiments.values_list("runs", flat=True).count()
    print(f"runs table: {runs:,} runs, 5 metric columns and a setting")
    _report("  first page", client.timings(table, repeat), TARGETS_MS["table"])
    times, body = client.timings(f"{table}?sort=metric:last:reward/mean&order=desc", repeat,
                                 keep_body=True)
    _report("  sorted by reward/mean (last), first page", times, None)
    after = re.search(rb'id="next-page" href="\?([^"]+)"', body)
    if after:
        query = after.group(1).decode().replace("&amp;", "&")
        _report("  sorted by reward/mean (last), next page",
                client.timings(f"{table}?{query}", repeat), None)
    _report("  sorted by the mean of the last 10 (reads points of every run)",
            client.timings(f"{table}?sort=metric:mean:10:reward/mean", max(2, repeat // 4)),
            None)
    _report("  filtered: tag and metric range",
            client.timings(f"{table}?tag=seen&metric_key=reward/mean&metric_min=1", repeat),
            None)
    _report("  grouped by config less seed",
            client.timings(f"{table}?group=seed_group", max(2, repeat // 4)),
            None)


def _part_charts(client: Client, world, repeat: int) -> None:
    from django.urls import reverse

    url = reverse("live:metrics", args=[world.big_run.pk])
    timings, body = client.timings(url, repeat, keep_body=True)
    _report(f"chart data, 20 metrics × {world.steps:,} steps ({len(body) / 1e6:.1f} MB of JSON)",
            timings, TARGETS_MS["charts"], cold_judged=True)
    import json

    series = json.loads(body)["series"]
    points = [len(values[0]) for values in series.values()]
    print(f"    {len(series)} series, {min(points)}–{max(points)} points each "
          f"(from {world.steps:,})")


def _seed_group_ids(client: Client, world) -> dict[str, str]:
    """Each method's group id on the group pages (its seed group). Loading the URLconf here
    imports rliable, scipy and pandas, which can outlast uvicorn's keep-alive: the next request
    opens a fresh connection."""
    from django.urls import reverse

    from webapp.groups.grouping import BY_SEED, Grouping, runs_group

    reverse("groups:series", args=[world.big_run.experiment.project_id])
    client.connection.close()
    return {name: runs_group(runs, Grouping(by=BY_SEED))[0].id
            for name, runs in world.methods.items()}


def _part_group(client: Client, world, repeat: int) -> None:
    import json

    from django.urls import reverse

    ids = _seed_group_ids(client, world)
    base = reverse("groups:series", args=[world.big_run.experiment.project_id])
    steps = world.group_steps
    for label, query, target in (
            (f"group chart, 10 seeds × {steps:,} steps, mean ± std",
             [("group", ids["method-a"]), ("metric", "reward/mean"), ("band", "std")],
             TARGETS_MS["group"]),
            (f"group chart, 10 seeds × {steps:,} steps, bootstrap CI",
             [("group", ids["method-a"]), ("metric", "reward/mean"), ("band", "ci")],
             TARGETS_MS["group"]),
            (f"group chart, 2 groups × 10 seeds × {steps:,} steps, bootstrap CI",
             [("group", ids["method-a"]), ("group", ids["method-b"]),
              ("metric", "reward/mean"), ("band", "ci")], None)):
        timings, body = client.timings(f"{base}?{urlencode(query)}", repeat, keep_body=True)
        _report(label, timings, target)
        answer = json.loads(body)
        print(f"    {len(answer['steps'])} buckets of {answer['width']} steps")


def _part_stats(client: Client, world, repeat: int) -> None:
    from django.urls import reverse

    ids = _seed_group_ids(client, world)
    query = [("group", ids["method-a"]), ("group", ids["method-b"]),
             ("baseline", ids["method-b"]), ("metric", "reward/mean"), ("read", "last"),
             ("k", "10")]
    url = f"{reverse('groups:statistics', args=[world.big_run.experiment.project_id])}"
    _report("statistics, 2 groups × 10 seeds (mean, IQM, difference, P(improvement))",
            client.timings(f"{url}?{urlencode(query)}", repeat), TARGETS_MS["stats"])


def _part_rollouts(client: Client, world, repeat: int) -> None:
    from django.urls import NoReverseMatch, reverse

    try:
        base = reverse("rollouts:browser", args=[world.big_run.pk])
    except NoReverseMatch:
        print("rollout browser: no such page yet (rollouts:browser)")
        return
    for label, query in ROLLOUT_QUERIES:
        url = f"{base}?{urlencode(query)}" if query else base
        _report(f"rollout browser, {label}", client.timings(url, repeat),
                TARGETS_MS["rollouts"])


# What a user filters the rollout browser by, over 1M rollouts (webapp.rollouts.rollout_browser).
ROLLOUT_QUERIES = [
    ("newest page", {}),
    ("a step range", {"step_min": 5000, "step_max": 5100}),
    ("reward ≥ 0.5, sorted by advantage", {"reward_min": 0.5, "sort": "-advantage"}),
    ("degenerate groups", {"degenerate": "yes"}),
    ("truncated, sorted by length", {"truncated": "yes", "sort": "-length"}),
    ("text search", {"q": "answer is 4217"}),
    ("text search + step range + reward", {"q": "4217", "step_min": 100,
                                           "step_max": 90000, "reward_max": 0.5}),
]


def _part_streams(client: Client, world, web, args: argparse.Namespace) -> None:
    from django.urls import reverse

    from benchmarks.processes import postgres_pids, process_cpu_seconds
    from benchmarks.web_data import RunLogger

    print(f"\nevent streams: a run that logs a step every second (30 metric points and a log "
          f"line), {args.stream_seconds:.0f} s without streams, then {args.streams} open")
    logger = RunLogger(world.live_run)
    logger.start()
    try:
        time.sleep(2)  # the logger's first steps

        def cpu() -> float:
            return sum(process_cpu_seconds(pid)
                       for pid in [web.proc.pid, *postgres_pids(DATABASE)])

        before = cpu()
        time.sleep(args.stream_seconds)
        quiet = cpu() - before
        path = reverse("live:events", args=[world.live_run.pk])
        connecting = time.perf_counter()
        readers = [StreamReader(client, path) for _ in range(args.streams)]
        print(f"  {args.streams} streams connected in {time.perf_counter() - connecting:.1f} s")
        time.sleep(3)  # the feed's first batch reaches them all
        before = cpu()
        time.sleep(args.stream_seconds)
        busy = cpu() - before
        received = [reader.events for reader in readers]
        for reader in readers:
            reader.close()
    finally:
        logger.stop()
    extra = (busy - quiet) / args.stream_seconds
    verdict = "PASS" if extra < STREAM_CPU_TARGET else "FAIL"
    print(f"  web server + Postgres CPU: {quiet / args.stream_seconds:.1%} of a core without "
          f"streams, {busy / args.stream_seconds:.1%} with {args.streams}")
    print(f"  events received per stream: {min(received)}–{max(received)} "
          f"(the logger wrote {logger.steps} steps)")
    print(f"  added by {args.streams} streams: {extra:.1%} of a core "
          f"(target < {STREAM_CPU_TARGET:.0%}): {verdict}")


class Client:
    """Timed GET requests over one kept-alive HTTP connection, signed in."""

    def __init__(self, base_url: str, cookie: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookie = cookie
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def wait_until_up(self, web) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.get("/healthz")
                return
            except OSError:
                self.connection.close()
                time.sleep(0.3)
        raise RuntimeError(f"uvicorn did not start:\n{web.output()[-3000:]}")

    def get(self, path: str) -> bytes:
        self.connection.request("GET", path, headers={"Cookie": self.cookie})
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
        return body

    def timings(self, path: str, repeat: int, keep_body: bool = False):
        """Milliseconds per request, the first one (cold caches) apart, and the last body if
        asked."""
        start = time.perf_counter()
        body = self.get(path)
        times = [(time.perf_counter() - start) * 1000]
        for _ in range(repeat):
            start = time.perf_counter()
            body = self.get(path)
            times.append((time.perf_counter() - start) * 1000)
        return (times, body) if keep_body else times


class StreamReader:
    """One open event stream, drained by a thread, counting events."""

    def __init__(self, client: Client, path: str):
        self.connection = http.client.HTTPConnection(client.host, client.port, timeout=60)
        self.connection.request("GET", path, headers={"Cookie": client.cookie,
                                                      "Accept": "text/event-stream"})
        self.response = self.connection.getresponse()
        self.events = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        try:
            for line in self.response.fp:
                if line.startswith(b"event: "):
                    self.events += 1
        except (OSError, ValueError):
            pass  # closed

    def close(self) -> None:
        """Hang up as a closed browser tab does; shutdown wakes the thread blocked reading."""
        try:
            self.connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()
        self.thread.join(timeout=5)


def _report(label: str, times: list[float], target_ms: float | None, *,
            cold_judged: bool = False) -> None:
    """The median and p90 of the requests after the first, and the first (cold) beside; with a
    verdict against `target_ms`, or none for a figure given for information. `cold_judged`: the
    first request meets the target too (what a user opening the page waits for)."""
    first, warm = times[0], times[1:]
    median = statistics.median(warm)
    p90 = sorted(warm)[int(len(warm) * 0.9) - 1]
    if target_ms is None:
        verdict = "(for information)"
    else:
        judged = [median, first] if cold_judged else [median]
        passed = all(figure < target_ms for figure in judged)
        verdict = (f"(target < {target_ms} ms{', first included' if cold_judged else ''}): "
                   f"{'PASS' if passed else 'FAIL'}")
    print(f"{label}: {median:.0f} ms median, {p90:.0f} ms p90, first {first:.0f} ms {verdict}")


if __name__ == "__main__":
    sys.exit(main())
