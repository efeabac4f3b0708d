"""Load benchmark (issue 14), run by `make bench-load`; it prints figures, it asserts nothing.

rlab in full mode on this machine: a scratch Postgres database (`rlab_bench_load`, created and
dropped), a Redis of its own (a free port, nothing kept on disk), uvicorn with `--web-workers`
processes (2 by default: one per core) and a Celery worker (whose housekeeping passes run on the
database as in production). locust (the `load` extra), in a process of its own, drives it for
`--minutes` with the users of benchmarks/locustfile.py:

    writers      20 tracked runs, each logging a step of 20 metrics and a batch of 16 rollouts
                 every second through the REST API, with an API token, as a script would
    readers      50 open run pages, 2-3 on each run: the page and its chart data, then its event
                 stream for about 30 s, then the page again. Each metrics event's delay is its
                 arrival minus the wall time its points were logged at (one clock: this machine's)
    API readers  10 scripts reading run lists, metric series, rollouts and runs, once a second

It prints the p50/p99 of page, API read and API write latency, the events' delay from log to
browser, errors by kind, and points and rollouts sent against those stored (rows counted at the
end), with the CPU that the web server, Postgres, the worker and locust used. Targets: no
error, every p99 < 500 ms, events' p99 < 2 s, stored = sent.

    python -m benchmarks.bench_load                  # 10 minutes
    python -m benchmarks.bench_load --minutes 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks.processes import postgres_cpu_seconds, process_cpu_seconds, process_tree
from benchmarks.scratch import ADMIN_URL, rlab_django, scratch_database

DATABASE = "rlab_bench_load"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
TARGET_P99_MS = 500
TARGET_EVENT_DELAY_S = 2.0
# Request names' prefixes (locustfile.py) by the figure they count in; an event stream's request
# (the time to its response's headers) is shown in the table only.
KINDS = {"page": "pages (run page, chart data)", "api read": "API reads",
         "api write": "API writes"}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from tests.stack import free_port, start_redis

    broker_port = free_port()
    # Before Django reads its settings: the web server, the worker and this process share it.
    os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{broker_port}/0"
    with TemporaryDirectory(prefix="bench-load-") as scratch, \
            scratch_database(args.postgres, DATABASE) as database_url, rlab_django(database_url):
        broker = start_redis(Path(scratch), broker_port)
        try:
            _run(args, Path(scratch))
        finally:
            broker.stop()
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_load",
                                     description="rlab in full mode under a steady load.")
    parser.add_argument("--minutes", type=float, default=10.0, help="length (default 10)")
    parser.add_argument("--writers", type=int, default=20,
                        help="tracked runs logging every second (default 20)")
    parser.add_argument("--metrics", type=int, default=20,
                        help="metrics each writer logs a second (default 20)")
    parser.add_argument("--rollouts", type=int, default=16,
                        help="rollouts each writer logs a second, groups of 8 (default 16)")
    parser.add_argument("--readers", type=int, default=50, help="open run pages (default 50)")
    parser.add_argument("--watch-seconds", type=float, default=30.0,
                        help="how long a page keeps its stream open on average (default 30)")
    parser.add_argument("--api-readers", type=int, default=10,
                        help="scripts reading the API once a second (default 10)")
    parser.add_argument("--web-workers", type=int, default=2,
                        help="uvicorn worker processes (default 2: one per core)")
    parser.add_argument("--postgres", default=ADMIN_URL,
                        help=f"a Postgres URL whose user may create databases (default "
                             f"{ADMIN_URL}); the scratch database is {DATABASE}")
    args = parser.parse_args(argv)
    if args.writers < 1 or args.metrics < 2 or args.rollouts < 8 or args.rollouts % 8:
        parser.error("--writers must be 1 or more, --metrics 2 or more, --rollouts a multiple "
                     "of 8")
    return args


def _run(args: argparse.Namespace, scratch: Path) -> None:
    from django.conf import settings

    from tests.stack import Process, free_port, stack_env, start_worker, wait_for_web
    from webapp.config.web_server import uvicorn_command

    world = _world(args.writers)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    web = Process("web", uvicorn_command(host="127.0.0.1", port=port, extra=[
        "--workers", str(args.web_workers), "--no-access-log"]), stack_env(), scratch)
    processes = [web]
    try:
        processes.append(start_worker(scratch, RLAB_RUN_DIR=str(scratch / "runs")))
        wait_for_web(base_url)
        alone = _warm_up(base_url, world, rounds=4 * args.web_workers)
        print(f"rlab under load: {args.writers} writers ({args.metrics} metrics and "
              f"{args.rollouts} rollouts a second each), {args.readers} open run pages, "
              f"{args.api_readers} API readers, for {args.minutes:g} min; uvicorn "
              f"(--workers {args.web_workers}), 1 Celery worker, Postgres and Redis "
              f"({settings.CELERY_BROKER_URL}), all on {os.cpu_count()} cores; load average "
              f"{os.getloadavg()[0]:.1f} before", flush=True)
        print("one request at a time on the idle server (median ms): " + ", ".join(
            f"{name} {milliseconds:.0f}" for name, milliseconds in alone.items()), flush=True)
        result_path = scratch / "locust-result.json"
        config_path = scratch / "locust-config.json"
        config_path.write_text(json.dumps({
            "token": world["token"], "cookie": world["cookie"], "project": world["project"],
            "runs": world["runs"], "metrics": args.metrics, "rollout_groups": args.rollouts // 8,
            "group_size": 8, "writers": args.writers, "readers": args.readers,
            "api_readers": args.api_readers, "watch_seconds": args.watch_seconds,
            "result": str(result_path)}))
        cpu = _CpuMeter({"web server": process_tree(web.proc.pid),
                         "Celery worker": process_tree(processes[1].proc.pid)})
        _run_locust(args, base_url, config_path, result_path, cpu)
        if not result_path.exists():
            raise RuntimeError("locust wrote no result:\n"
                               f"{(scratch / 'locust.log').read_text()[-4000:]}")
        result = json.loads(result_path.read_text())
        seconds = result["window"]["stop"] - result["window"]["start"]
        _report(args, result, world, cpu.shares(seconds), seconds)
    finally:
        for process in reversed(processes):
            process.stop()


def _world(writers: int) -> dict:
    """A user in a team with a project, an API token and a signed-in session, and the tracked
    runs the writers log to (one more for the warm-up)."""
    from django.contrib.auth import get_user_model

    from benchmarks.web_data import session_cookie
    from webapp.api.tokens import token_create
    from webapp.projects.services import project_create
    from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create
    from webapp.teams.services import team_create

    user = get_user_model().objects.create_user("bench", password="bench-load-2026")
    team = team_create(name="Bench", user=user)
    project = project_create(team=team, name="Bench", description="", user=user)
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="load")
    runs = [tracked_run_create(experiment=experiment, user=user, name=f"writer {i}").pk
            for i in range(writers + 1)]
    return {"token": token_create(user=user, name="bench")[1], "cookie": session_cookie(user),
            "project": project.pk, "runs": runs[:-1], "warm_up_run": runs[-1]}


def _warm_up(base_url: str, world: dict, rounds: int) -> dict[str, float]:
    """Each kind of request `rounds` times, one at a time, on fresh connections (which the
    kernel spreads over uvicorn's workers), so that no worker loads its code during the
    measurement; the median milliseconds of each over the second half of the rounds, on a run
    with few rows: what a request costs when it has the server to itself."""
    api = {"Authorization": f"Bearer {world['token']}", "Content-Type": "application/json"}
    page = {"Cookie": world["cookie"]}
    run = world["warm_up_run"]
    times: dict[str, list[float]] = {}
    for step in range(rounds):
        for name, path, headers, body in [
                ("run page", f"/runs/{run}/", page, None),
                ("chart data", f"/runs/{run}/metrics.json", page, None),
                ("run list", f"/api/runs?project={world['project']}&limit=20", api, None),
                ("metric read", f"/api/runs/{run}/metrics", api, None),
                ("rollout read", f"/api/runs/{run}/rollouts", api, None),
                ("metric write", f"/api/runs/{run}/metrics", api, json.dumps({"series": [
                    {"key": f"warm/{k}", "steps": [step], "values": [1.0]}
                    for k in range(20)]}).encode()),
                ("rollout write", f"/api/runs/{run}/rollouts", api, json.dumps(
                    {"step": step, "items": [{"prompt": "p", "completion": "c", "reward": 1.0,
                                              "sample_index": i} for i in range(16)]}).encode()),
                ("stream headers", f"/runs/{run}/events/", page, None)]:
            request = urllib.request.Request(f"{base_url}{path}", data=body, headers=headers)
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                if name != "stream headers":
                    response.read()
                times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values[rounds // 2:]) for name, values in times.items()}


class _CpuMeter:
    """CPU seconds of named process trees, of Postgres's work for the database, and of the
    whole machine, between start() and stop()."""

    def __init__(self, trees: dict[str, list[int]]):
        self.trees = trees
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {**{name: sum(process_cpu_seconds(pid) for pid in pids)
                   for name, pids in self.trees.items()},
                "Postgres": postgres_cpu_seconds(DATABASE), "machine": _machine_busy_seconds()}

    def start(self) -> None:
        self.used = self._read()

    def stop(self) -> None:
        self.used = {name: value - self.used[name] for name, value in self._read().items()}

    def shares(self, seconds: float) -> dict[str, float]:
        return {name: used / seconds for name, used in self.used.items()}


def _machine_busy_seconds() -> float:
    """CPU seconds that all of the machine's cores have spent busy (neither idle nor waiting for
    the disk) since it started."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _run_locust(args: argparse.Namespace, base_url: str, config_path: Path, result_path: Path,
                cpu: _CpuMeter) -> None:
    """locust with every user at once for --minutes, the CPU measured from the moment all users
    have started to the moment they are told to stop (the locustfile marks both)."""
    users = args.writers + args.readers + args.api_readers
    run_seconds = max(10, round(args.minutes * 60))
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--host", base_url, "--users", str(users), "--spawn-rate", str(users),
               "--run-time", f"{run_seconds}s", "--stop-timeout", "30", "--only-summary"]
    env = {**os.environ, "RLAB_LOAD_CONFIG": str(config_path)}
    with open(result_path.with_name("locust.log"), "w") as log:
        locust = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        cpu.trees["locust"] = [locust.pid]
        try:
            for marker, then in ((".started", cpu.start), (".stopping", cpu.stop)):
                while not Path(f"{result_path}{marker}").exists() and locust.poll() is None:
                    time.sleep(0.05)
                then()
            locust.wait(timeout=120)
        finally:
            if locust.poll() is None:
                locust.kill()


def _report(args: argparse.Namespace, result: dict, world: dict, cpu: dict[str, float],
            seconds: float) -> None:
    from webapp.runs.models import MetricPoint, Rollout

    print(f"load average {os.getloadavg()[0]:.1f} after\n")
    steps = sum(result["sent"]["points"].values()) / args.metrics
    print(f"writers logged {steps / seconds:.1f} steps a second of the {args.writers} asked "
          f"(a writer falls behind when its requests take longer than a second)\n")
    times: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    for name, milliseconds, succeeded in result["requests"]:
        times.setdefault(name, []).append(milliseconds)
        failures[name] = failures.get(name, 0) + (not succeeded)
    print(f"{'request':<26}{'count':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for name in sorted(times):
        values = sorted(times[name])
        print(f"{name:<26}{len(values):>8,}{_percentile(values, 50):>9.0f}"
              f"{_percentile(values, 99):>9.0f}{values[-1]:>9.0f}{failures[name]:>8,}")
    print()
    verdicts = []
    for prefix, label in KINDS.items():
        values = sorted(t for name, ts in times.items() if name.startswith(f"{prefix}:")
                        for t in ts)
        if not values:
            continue
        p99 = _percentile(values, 99)
        verdicts.append(p99 < TARGET_P99_MS)
        print(f"{label}: p50 {_percentile(values, 50):.0f} ms, p99 {p99:.0f} ms over "
              f"{len(values):,} requests (target p99 < {TARGET_P99_MS} ms): "
              f"{_verdict(verdicts[-1])}")
    delays = sorted(result["delays"])
    if delays:
        p99 = _percentile(delays, 99)
        verdicts.append(p99 < TARGET_EVENT_DELAY_S)
        print(f"events from log to browser: p50 {_percentile(delays, 50):.2f} s, p99 {p99:.2f} s, "
              f"max {delays[-1]:.2f} s over {len(delays):,} steps received "
              f"(target p99 < {TARGET_EVENT_DELAY_S:.0f} s): {_verdict(verdicts[-1])}")
    else:
        verdicts.append(False)
        print("events from log to browser: no metrics event arrived: FAIL")
    errors = sum(count for *_, count in result["errors"])
    verdicts.append(errors == 0)
    print(f"errors: {errors:,} (target 0): {_verdict(errors == 0)}")
    for name, error, count in sorted(result["errors"], key=lambda e: -e[2]):
        print(f"    {count:>6,} × {name}: {error}")
    for kind, model, label in (("points", MetricPoint, "metric points"),
                               ("rollouts", Rollout, "rollouts")):
        sent = sum(result["sent"][kind].values())
        acknowledged = sum(result["acknowledged"][kind].values())
        stored = model.objects.filter(run_id__in=world["runs"]).count()
        verdicts.append(stored == sent)
        print(f"{label}: {sent:,} sent, {acknowledged:,} answered 200, {stored:,} stored "
              f"(target stored = sent): {_verdict(stored == sent)}")
    machine = cpu.pop("machine")
    print("CPU, share of one core over the run: " + ", ".join(
        f"{name} {share:.0%}" for name, share in cpu.items()))
    print(f"    all {os.cpu_count()} cores together: busy {machine:.0%} of one core's time, "
          f"{max(0.0, machine - sum(cpu.values())):.0%} by other processes (Postgres's figure "
          "above includes other databases' backends that ended meanwhile)")
    print(f"\nall targets met: {'yes' if all(verdicts) else 'no'}")


def _percentile(values: list[float], percent: float) -> float:
    """Nearest rank: the smallest value that `percent`% of the sorted `values` do not exceed."""
    return values[max(0, math.ceil(len(values) * percent / 100) - 1)]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


if __name__ == "__main__":
    sys.exit(main())
