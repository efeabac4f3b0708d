"""Start the real components as separate processes against the test database: a Celery worker
and the ASGI web server, as production runs them (used by the worker and browser tests); and
scenarios on SQLite in a process of their own, as embedded mode runs."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from webapp.config.web_server import uvicorn_command

ROOT = Path(__file__).resolve().parents[1]


def stack_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the test database (pytest-django's test_ copy), the
    test process's broker (so what a test enqueues reaches them), and quick heartbeats."""
    db = connection.settings_dict
    url = (f"postgres://{db['USER'] or 'postgres'}:{db['PASSWORD'] or ''}@{db['HOST']}:"
           f"{db['PORT'] or 5432}/{db['NAME']}")
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.config.settings.test",
            "DATABASE_URL": url, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "RLAB_HEARTBEAT_SECONDS": "1", "RLAB_CANCEL_GRACE_SECONDS": "3",
            "PYTHONUNBUFFERED": "1", **extra}


class Process:
    """A background process whose output goes to a log file, stopped with its whole group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not print {text!r}:\n{self.output()[-4000:]}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def sqlite_scenario(tmp_path: Path, module: str):
    """Run the scenario `module` (python -m) in a process of its own on a fresh, migrated SQLite
    database in `tmp_path`, as embedded mode runs; the JSON its last line of output holds."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.config.settings.test",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'rlab.sqlite3'}",
           "RLAB_VAR_DIR": str(tmp_path / "var"), "RLAB_RUN_DIR": str(tmp_path / "runs")}
    (tmp_path / "var").mkdir()
    for args in (["manage.py", "migrate", "--verbosity", "0"], ["-m", module]):
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def worker_name() -> str:
    """The name of the workers start_worker starts (runs record it as their worker)."""
    return f"test-{os.getpid()}@{socket.gethostname()}"


def start_worker(log_dir: Path, name: str = "worker", hostname: str | None = None,
                 concurrency: int = 1, **env: str) -> Process:
    """A Celery worker on the test broker (or env's CELERY_BROKER_URL, emptied first), once it is
    ready; `name` names its log, so a worker started again keeps its own; `hostname` is its
    node name (worker_name() by default: give a second worker at once another); `concurrency`
    its pool's size (runs at once)."""
    redis.Redis.from_url(env.get("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)).flushdb()
    worker = Process(name, [
        sys.executable, "-m", "celery", "-A", "worker.celery", "worker", "--queues", "cpu,gpu",
        "--concurrency", str(concurrency), "--loglevel", "info", "--without-gossip",
        "--without-mingle",
        "--hostname", hostname or worker_name()],
        stack_env(**{"RLAB_RUN_DIR": str(log_dir / "runs"), **env}), log_dir)
    worker.wait_for_output("ready.", timeout=60)
    return worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(log_dir: Path, port: int | None = None, name: str = "web", **env: str,
              ) -> tuple[Process, str]:
    """The ASGI server on `port` (a free one by default), once it answers; `name` names its log,
    so a server started again on the same port keeps its own. `env` adds settings (as
    environment variables); the command line is production's (webapp.config.web_server)."""
    port = port or free_port()
    web = Process(name, uvicorn_command(host="127.0.0.1", port=port), stack_env(**env), log_dir)
    base_url = f"http://127.0.0.1:{port}"
    wait_for_answer(f"{base_url}/healthz", what="web server", process=web)
    return web, base_url


def training_processes(run_id: int) -> list[int]:
    """PIDs of live `training.process` processes of a run (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if (b"training.process" in cmdline and f"RLAB_RUN_ID={run_id}\0".encode() in environ
                and state != "Z"):
            pids.append(int(entry.name))
    return pids


def wait_for_web(base_url: str, timeout: float = 60) -> None:
    wait_for_answer(f"{base_url}/healthz", what=base_url, timeout=timeout)


def wait_for_answer(url: str, *, what: str, process: Process | None = None,
                    timeout: float = 60) -> None:
    """Until a GET of `url` answers; AssertionError after `timeout` seconds, with the end of the
    process's output when there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    output = f":\n{process.output()[-4000:]}" if process is not None else ""
    raise AssertionError(f"{what} did not answer within {timeout} s{output}")


def start_serve(log_dir: Path, port: int | None = None, **env: str) -> tuple[Process, str]:
    """`manage.py serve` (web server and worker, as embedded mode runs them) on the test database
    and broker, once its web server answers and its worker is ready."""
    redis.Redis.from_url(env.get("CELERY_BROKER_URL", settings.CELERY_BROKER_URL)).flushdb()
    port = port or free_port()
    serve = Process("serve", [sys.executable, "manage.py", "serve", "--port", str(port)],
                    stack_env(**{"RLAB_VAR_DIR": str(log_dir / "var"), **env}), log_dir)
    base_url = f"http://127.0.0.1:{port}"
    wait_for_web(base_url)
    serve.wait_for_output(" ready.", timeout=60)
    return serve, base_url


def start_s3(log_dir: Path) -> tuple[Process, str]:
    """moto's S3-compatible server (for MinIO, AWS) on a free port, as a process of its own: in
    the test process its Flask app would stay imported, and vLLM's start-up trips over Flask's
    context proxies in any module it scans."""
    port = free_port()
    server = Process(f"s3-{port}", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(port)], dict(os.environ), log_dir)
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_answer(f"{endpoint}/moto-api/", what="moto's S3 server", process=server)
    return server, endpoint


def start_redis(log_dir: Path, port: int) -> Process:
    """A Redis of the test's own on `port`, keeping nothing on disk (as in development)."""
    server = Process(f"redis-{port}", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], dict(os.environ),
                     log_dir)
    server.wait_for_output("Ready to accept connections", timeout=30)
    return server


def processes(*, parent: int | None = None, group: int | None = None) -> dict[int, str]:
    """Live processes (not zombies) by pid, with their command lines: the children of `parent`,
    or the members of process group `group`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the command name in parentheses: state, ppid, pgrp.
            state, ppid, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if state != "Z" and (parent is None or int(ppid) == parent) and (
                group is None or int(pgrp) == group):
            found[int(entry.name)] = cmdline
    return found


class WebSession:
    """Plain HTTP requests to the web server as `user`, signed in by a session stored in the test
    database, with a CSRF token for its forms."""

    def __init__(self, base_url: str, user):
        from django.test import Client

        client = Client()
        client.force_login(user)
        self.base_url = base_url
        csrf = secrets.token_hex(16)
        self.headers = {
            "Cookie": f"{settings.SESSION_COOKIE_NAME}="
                      f"{client.cookies[settings.SESSION_COOKIE_NAME].value}; "
                      f"{settings.CSRF_COOKIE_NAME}={csrf}",
            "X-CSRFToken": csrf,
        }

    def get(self, path: str, timeout: float = 30) -> tuple[int, str, str]:
        """(status, body, the address after redirects)."""
        return self._open(urllib.request.Request(f"{self.base_url}{path}",
                                                 headers=self.headers), timeout)

    def post(self, path: str, timeout: float = 30) -> tuple[int, str, str]:
        return self._open(urllib.request.Request(f"{self.base_url}{path}", data=b"",
                                                 headers=self.headers, method="POST"), timeout)

    @staticmethod
    def _open(request: urllib.request.Request, timeout: float) -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode(), response.geturl()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace"), exc.geturl()


def launch_run(project, user, name: str, config: dict):
    """A new experiment called `name` with `config`, launched: its queued run."""
    from webapp.experiments.services import experiment_create
    from webapp.runs.services import run_launch

    experiment = experiment_create(project=project, author=user, name=name, description="",
                                   config=config)
    return run_launch(experiment=experiment, user=user)


def wait_for_run(run, predicate, timeout: float, process: Process | None = None):
    """`run`, re-read until predicate(run) holds; AssertionError after `timeout` seconds, with
    the run's state and the tail of `process`'s log (a worker's, a server's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if predicate(run):
            return run
        time.sleep(0.1)
    log = process.output()[-4000:] if process is not None else ""
    raise AssertionError(f"run {run.pk} is {run.status} ({run.error_message}):\n{log}")
