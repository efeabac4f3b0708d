"""Start the real components as separate processes against the test database: a Celery worker
and the ASGI web server, as production runs them. Used by the worker and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

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


def start_worker(log_dir: Path, **env: str) -> Process:
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    worker = Process("worker", [
        sys.executable, "-m", "celery", "-A", "worker.celery", "worker", "--queues", "cpu,gpu",
        "--concurrency", "1", "--loglevel", "info", "--without-gossip", "--without-mingle",
        "--hostname", f"test-{os.getpid()}@%h"],
        stack_env(**{"RLAB_RUN_DIR": str(log_dir / "runs"), **env}), log_dir)
    worker.wait_for_output("ready.", timeout=60)
    return worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(log_dir: Path, port: int | None = None, name: str = "web",
              ) -> tuple[Process, str]:
    """The ASGI server on `port` (a free one by default), once it answers; `name` names its log,
    so a server started again on the same port keeps its own."""
    port = port or free_port()
    web = Process(name, [sys.executable, "-m", "uvicorn", "webapp.config.asgi:application",
                          "--host", "127.0.0.1", "--port", str(port)], stack_env(), log_dir)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base_url}/healthz", timeout=2)
            return web, base_url
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"web server did not start:\n{web.output()[-4000:]}")


def training_processes(run_id: int) -> list[int]:
    """PIDs of live `training.child` processes of a run (read from /proc)."""
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
        if (b"training.child" in cmdline and f"RLAB_RUN_ID={run_id}\0".encode() in environ
                and state != "Z"):
            pids.append(int(entry.name))
    return pids
