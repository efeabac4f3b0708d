"""Metric ingestion benchmark (issue 7), run by `make bench-ingest`; it prints figures, it asserts
nothing.

The same points go, in one invocation, to rlab's API and to an MLflow tracking server, both
backed by the same Postgres server (each in a scratch database that this script creates and
drops) and both served by uvicorn with the same number of worker processes:

    api     POST /api/runs/<id>/metrics, a tracked run's batches of `--batch` points as columns
            (the SDK's format), with a personal API token
    mlflow  POST /api/2.0/mlflow/runs/log-batch, 1,000 metrics a call (the most MLflow takes,
            and what its client's log_batch sends)

`--scripts` training scripts log at once (default 2), each to a run of its own over its own
kept-alive connection, each a share of the steps: one run's requests follow each other, as one
script's do. The request bodies are encoded before the clock starts, so both rates are the
servers' and Postgres's, not this script's JSON encoding. Each side is timed from its first
request to its last response; the stored rows are then counted, so a server that dropped points
cannot look fast. The CPU seconds that each
server's processes and Postgres used meanwhile are printed per 100k points. Postgres writes out
its buffers (CHECKPOINT) before each part, so that no part pays for another's writes.

A third part, sdk, times what a training script gets: rlab.init(), run.log() of every metric at
each step, then finish(), which returns once the SDK's thread has delivered everything.

    python -m benchmarks.bench_ingest                       # 1M points each (a few minutes)
    python -m benchmarks.bench_ingest --quick               # checks the script
    python -m benchmarks.bench_ingest --parts api,sdk       # no MLflow needed
    python -m benchmarks.bench_ingest --mlflow /path/to/venv/bin/mlflow
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from benchmarks.processes import postgres_cpu_seconds, process_cpu_seconds, process_tree
from benchmarks.scratch import ADMIN_URL, checkpoint, rlab_django, scratch_database

PARTS = ("api", "sdk", "mlflow")
RLAB_DATABASE = "rlab_bench_ingest"
MLFLOW_DATABASE = "mlflow_bench_ingest"
MLFLOW_BATCH = 1000  # MLflow's MAX_METRICS_PER_BATCH
TARGET_RATE = 50_000  # points/s
TARGET_RATIO = 10.0
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MLFLOW = ROOT / "var" / "bench" / "mlflow" / "bin" / "mlflow"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    mlflow = Path(args.mlflow)
    if "mlflow" in args.parts and not mlflow.exists():
        sys.exit(f"no MLflow server at {mlflow}: `make bench-ingest` installs one there, or "
                 "pass --mlflow")
    with scratch_database(args.postgres, RLAB_DATABASE) as rlab_url, \
            scratch_database(args.postgres, MLFLOW_DATABASE) as mlflow_url, \
            rlab_django(rlab_url), TemporaryDirectory(prefix="bench-ingest-") as scratch:
        _run(args, rlab_url, mlflow_url, mlflow, Path(scratch))
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest",
                                     description="Metric ingestion: rlab's API against MLflow's.")
    parser.add_argument("--points", type=int, help="points sent to each (default 1,000,000)")
    parser.add_argument("--keys", type=int, default=20, help="metrics per step (default 20)")
    parser.add_argument("--batch", type=int, default=20_000,
                        help="points per rlab request (default 20,000; the SDK sends what "
                             "was logged each second, or each 10,000 points)")
    parser.add_argument("--scripts", type=int, default=2,
                        help="scripts logging at once, each to its own run (default 2)")
    parser.add_argument("--workers", type=int, default=2,
                        help="uvicorn worker processes of each server (default 2: the cores)")
    parser.add_argument("--mlflow", default=str(DEFAULT_MLFLOW),
                        help=f"the mlflow command of a full MLflow install (default {DEFAULT_MLFLOW})")
    parser.add_argument("--postgres", default=ADMIN_URL,
                        help=f"a Postgres URL whose user may create databases (default "
                             f"{ADMIN_URL})")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, from {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="50,000 points: checks the script")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.points is None:
        args.points = 50_000 if args.quick else 1_000_000
    return args


@dataclass(frozen=True)
class Points:
    """`keys` metrics logged at every step from `first` on, each step timed one second after
    the last."""

    keys: int
    steps: int
    start: float  # Unix seconds of step 0
    first: int = 0

    def shares(self, parts: int) -> list[Points]:
        """The steps cut into `parts` consecutive ranges, one for each script."""
        bounds = [self.first + self.steps * i // parts for i in range(parts + 1)]
        return [Points(self.keys, high - low, self.start, low)
                for low, high in zip(bounds, bounds[1:])]

    @property
    def count(self) -> int:
        return self.keys * self.steps

    def key(self, k: int) -> str:
        return "train/loss" if k == 0 else f"train/metric_{k:02d}"

    def value(self, k: int, step: int) -> float:
        return round(1.0 / (step + 1) + k * 0.001 + (step * 7919 % 1000) * 1e-6, 9)

    def rlab_bodies(self, per_request: int) -> list[bytes]:
        """Requests of `per_request` points: consecutive steps of every key, as columns."""
        steps_each = max(1, per_request // self.keys)
        bodies = []
        end = self.first + self.steps
        for first in range(self.first, end, steps_each):
            steps = range(first, min(first + steps_each, end))
            times = [self.start + s for s in steps]
            bodies.append(json.dumps({"series": [
                {"key": self.key(k), "steps": list(steps),
                 "values": [self.value(k, s) for s in steps], "times": times}
                for k in range(self.keys)]}).encode())
        return bodies

    def mlflow_bodies(self, run_id: str) -> list[bytes]:
        """log-batch requests of MLFLOW_BATCH metrics, step by step as a script logs them."""
        metrics = ({"key": self.key(k), "value": self.value(k, s), "step": s,
                    "timestamp": int((self.start + s) * 1000)}
                   for s in range(self.first, self.first + self.steps) for k in range(self.keys))
        bodies, chunk = [], []
        for metric in metrics:
            chunk.append(metric)
            if len(chunk) == MLFLOW_BATCH:
                bodies.append(json.dumps({"run_id": run_id, "metrics": chunk}).encode())
                chunk = []
        if chunk:
            bodies.append(json.dumps({"run_id": run_id, "metrics": chunk}).encode())
        return bodies


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    stored: int
    server_cpu: float
    postgres_cpu: float

    @property
    def rate(self) -> float:
        return self.stored / self.seconds


def _run(args: argparse.Namespace, rlab_url: str, mlflow_url: str, mlflow: Path,
         scratch: Path) -> None:
    points = Points(keys=args.keys, steps=max(1, args.points // args.keys), start=time.time())
    print(f"metric ingestion: {points.count:,} points ({points.keys} metrics × "
          f"{points.steps:,} steps) to each server, from {args.scripts} scripts logging a run "
          f"each; {args.workers} uvicorn workers each; Postgres on the same {os.cpu_count()} "
          "cores\n")
    results = {}
    if "api" in args.parts or "sdk" in args.parts:
        results.update(_rlab_part(args, points, rlab_url, scratch))
    if "mlflow" in args.parts:
        results["mlflow"] = _mlflow_part(args, points, mlflow_url, mlflow, scratch)
    _report(results, points)


def _rlab_part(args: argparse.Namespace, points: Points, rlab_url: str,
               scratch: Path) -> dict[str, Result]:
    from tests.stack import Process, free_port
    from webapp.config.web_server import uvicorn_command

    port = free_port()
    web = Process("rlab", uvicorn_command(host="127.0.0.1", port=port, extra=[
                      "--no-access-log", "--workers", str(args.workers)]),
                  {**os.environ, "DATABASE_URL": rlab_url, "PYTHONUNBUFFERED": "1"}, scratch)
    results = {}
    try:
        token, project_id = _rlab_token_and_project()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        _wait_until_up(port, "/healthz", web)

        def new_run(name: str) -> int:
            return _post(port, f"/api/projects/{project_id}/tracked-runs",
                         {"experiment": "bench", "name": name}, headers)["id"]

        # First batches, to other runs, load the code in each worker.
        warmup = Points(keys=points.keys, steps=40, start=points.start)
        _send(port, [(f"/api/runs/{new_run('warm-up')}/metrics",
                      share.rlab_bodies(10 * points.keys))
                     for share in warmup.shares(args.scripts)], headers)
        if "api" in args.parts:
            run_ids = [new_run(f"ingest {i}") for i in range(args.scripts)]
            scripts = [(f"/api/runs/{run_id}/metrics", share.rlab_bodies(args.batch))
                       for run_id, share in zip(run_ids, points.shares(args.scripts))]
            checkpoint(args.postgres)
            results["api"] = _measure("rlab API", port, scripts, headers,
                                      process_tree(web.proc.pid), RLAB_DATABASE,
                                      lambda: _rlab_stored(run_ids))
        if "sdk" in args.parts:
            checkpoint(args.postgres)
            results["sdk"] = _measure_sdk(port, token, project_id, points, scratch)
    finally:
        web.stop()
    return results


def _mlflow_part(args: argparse.Namespace, points: Points, mlflow_url: str, mlflow: Path,
                 scratch: Path) -> Result:
    from tests.stack import Process, free_port

    port = free_port()
    # SQLAlchemy's default Postgres driver is psycopg 3; MLflow's environment has psycopg2.
    backend = mlflow_url.replace("postgres://", "postgresql+psycopg2://", 1)
    server = Process("mlflow", [str(mlflow), "server", "--backend-store-uri", backend,
                                "--default-artifact-root", str(scratch / "artifacts"),
                                "--host", "127.0.0.1", "--port", str(port),
                                "--workers", str(args.workers)],
                     {**os.environ, "PYTHONUNBUFFERED": "1"}, scratch)
    try:
        headers = {"Content-Type": "application/json"}
        _wait_until_up(port, "/health", server, timeout=180)
        api = "/api/2.0/mlflow"
        path = f"{api}/runs/log-batch"
        experiment = _post(port, f"{api}/experiments/create", {"name": "bench"},
                           headers)["experiment_id"]

        def new_run(name: str) -> str:
            return _post(port, f"{api}/runs/create",
                         {"experiment_id": experiment, "start_time": int(time.time() * 1000),
                          "run_name": name}, headers)["run"]["info"]["run_id"]

        warmup = Points(keys=points.keys, steps=200, start=points.start)
        _send(port, [(path, share.mlflow_bodies(new_run("warm-up")))
                     for share in warmup.shares(args.scripts)], headers)
        run_ids = [new_run(f"ingest {i}") for i in range(args.scripts)]
        scripts = [(path, share.mlflow_bodies(run_id))
                   for run_id, share in zip(run_ids, points.shares(args.scripts))]
        checkpoint(args.postgres)
        return _measure("MLflow", port, scripts, headers, process_tree(server.proc.pid),
                        MLFLOW_DATABASE, lambda: _mlflow_stored(mlflow_url, run_ids))
    finally:
        server.stop()


def _report(results: dict[str, Result], points: Points) -> None:
    print()
    for result in (results[part] for part in ("api", "mlflow") if part in results):
        print(f"{result.name:>8}: {result.rate:>9,.0f} points/s  ({result.stored:,} stored in "
              f"{result.seconds:.1f} s, {result.requests:,} requests; CPU per 100k points: "
              f"server {result.server_cpu / result.stored * 1e5:.2f} s, Postgres "
              f"{result.postgres_cpu / result.stored * 1e5:.2f} s)")
    if "api" in results:
        rate = results["api"].rate
        print(f"\nrlab: {rate:,.0f} points/s (target ≥ {TARGET_RATE:,}): "
              f"{'PASS' if rate >= TARGET_RATE else 'FAIL'}")
    if "api" in results and "mlflow" in results:
        ratio = results["api"].rate / results["mlflow"].rate
        print(f"rlab / MLflow: {ratio:.1f}× (target ≥ {TARGET_RATIO:.0f}×): "
              f"{'PASS' if ratio >= TARGET_RATIO else 'FAIL'}")
    if "sdk" in results:
        sdk = results["sdk"]
        print(f"\nrlab SDK, end to end: {sdk.rate:,.0f} points/s ({sdk.stored:,} stored in "
              f"{sdk.seconds:.1f} s from the first run.log() to finish() returning; the "
              f"script's logging, batching and spool share the cores with the server)")
    for result in results.values():
        if result.stored != points.count:
            print(f"WARNING: {result.name} stored {result.stored:,} of {points.count:,} points")


def _measure(name: str, port: int, scripts: list[tuple[str, list[bytes]]],
             headers: dict[str, str], server_pids: list[int], database: str, stored) -> Result:
    def cpu(pids: list[int]) -> float:
        return sum(process_cpu_seconds(pid) for pid in pids)

    bodies = [body for _, script_bodies in scripts for body in script_bodies]
    print(f"{name}: {len(bodies):,} requests of {sum(map(len, bodies)) / len(bodies) / 1e3:,.0f} "
          f"kB on average…", flush=True)
    server_before, postgres_before = cpu(server_pids), postgres_cpu_seconds(database)
    started = time.perf_counter()
    _send(port, scripts, headers)
    seconds = time.perf_counter() - started
    server_cpu = cpu(server_pids) - server_before
    postgres_cpu = postgres_cpu_seconds(database) - postgres_before
    return Result(name, len(bodies), seconds, stored(), server_cpu, postgres_cpu)


def _measure_sdk(port: int, token: str, project_id: int, points: Points,
                 scratch: Path) -> Result:
    """What a training script gets: run.log() of every key at each step, then finish(), which
    returns once the background thread has delivered the spool."""
    import rlab

    run = rlab.init(project=project_id, experiment="bench", name="sdk",
                    url=f"http://127.0.0.1:{port}", token=token, spool_dir=scratch / "spool")
    keys = [points.key(k) for k in range(points.keys)]
    print("rlab SDK: run.log() at every step…", flush=True)
    started = time.perf_counter()
    for step in range(points.steps):
        run.log({key: points.value(k, step) for k, key in enumerate(keys)}, step=step)
    run.finish()
    seconds = time.perf_counter() - started
    return Result("rlab SDK", 0, seconds, _rlab_stored([run.id]), 0.0, 0.0)


def _send(port: int, scripts: list[tuple[str, list[bytes]]], headers: dict[str, str]) -> None:
    """POST each script's bodies to its path, one after the other over a kept-alive connection
    of its own, the scripts at once; any answer but 200 stops the benchmark."""
    errors: list[str] = []

    def script(path: str, bodies: list[bytes]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            for body in bodies:
                if errors:
                    return
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                if response.status != 200:
                    errors.append(f"POST {path}: HTTP {response.status}: {answer[:500]!r}")
        except OSError as exc:
            errors.append(f"POST {path}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=script, args=job) for job in scripts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])


def _post(port: int, path: str, payload: dict, headers: dict[str, str]) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=json.dumps(payload), headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status not in (200, 201):
        raise RuntimeError(f"POST {path}: HTTP {response.status}: {body[:500]!r}")
    return json.loads(body)


def _wait_until_up(port: int, path: str, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if process.proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"{process.name} did not start:\n{process.output()[-3000:]}")


def _rlab_token_and_project() -> tuple[str, int]:
    from django.contrib.auth import get_user_model

    from webapp.api.tokens import token_create
    from webapp.projects.services import project_create
    from webapp.teams.services import team_create

    user = get_user_model().objects.create_user("bench", password="bench-ingest-2026")
    team = team_create(name="Bench", user=user)
    project = project_create(team=team, name="Bench", description="", user=user)
    return token_create(user=user, name="bench")[1], project.pk


def _rlab_stored(run_ids: list[int]) -> int:
    from webapp.runs.models import MetricPoint

    return MetricPoint.objects.filter(run_id__in=run_ids).count()


def _mlflow_stored(database_url: str, run_ids: list[str]) -> int:
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM metrics WHERE run_uuid = ANY(%s)",
                                   [run_ids]).fetchone()[0]


if __name__ == "__main__":
    sys.exit(main())
