"""Embedded mode in one command: migrate, then the ASGI web server and a Celery worker, supervised.

A worker that dies (killed, out of memory) is started again after a pause that doubles with each
quick death, while the web server keeps serving; its runs are then marked interrupted by the new
worker (worker.housekeeping). Ctrl-C or SIGTERM stops both: the worker marks its running run
interrupted and stops the training process first. The children also get SIGTERM if this process
itself is killed, so nothing outlives it.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.config.web_server import uvicorn_command

logger = logging.getLogger("rlab.serve")

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5
# Pauses before starting a dead worker again: from the first, doubling up to the last; a worker
# that had run STABLE_SECONDS before it died starts again after the first.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
STABLE_SECONDS = 60.0
# How long the web server may take to close its connections (open run pages keep theirs).
WEB_GRACEFUL_SECONDS = 5
STOP_WAIT_SECONDS = 15


class _Child:
    """One supervised process: in this process group, and sent SIGTERM if this process dies."""

    def __init__(self, name: str, command: list[str]):
        self.name = name
        self.command = command
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.running:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> None:
        """Wait for it to exit; SIGKILL it after `timeout` seconds."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the %s did not stop within %.0f s: killing it", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


class Command(BaseCommand):
    help = ("Run the web server (uvicorn) and a Celery worker together, starting the worker again "
            "if it dies; Ctrl-C stops both.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--queues", default="cpu,gpu",
                            help="Celery queues the worker takes runs from.")
        parser.add_argument("--no-worker", action="store_true", help="Start the web server only.")

    def handle(self, *args, host: str, port: int, queues: str, no_worker: bool,
               **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        signals_received: list[int] = []

        def on_signal(signum: int, frame: Any) -> None:
            signals_received.append(signum)
            if len(signals_received) > 1:  # asked twice: stop at once
                for child in children:
                    child.send(signal.SIGKILL)

        web = _Child("web server", uvicorn_command(host=host, port=port, extra=[
            "--no-access-log", "--timeout-graceful-shutdown", str(WEB_GRACEFUL_SECONDS)]))
        worker = None if no_worker else _Child("worker", [
            sys.executable, "-m", "celery", "-A", "worker.celery", "worker", "--queues", queues,
            "--concurrency", "1", "--loglevel", "info"])
        children = [child for child in (web, worker) if child is not None]
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for child in children:
            child.start()
        self.stdout.write(f"rlab is serving on http://{host}:{port}/ (Ctrl-C stops it)")

        exit_code = 0
        restart_at: float | None = None
        pause = RESTART_FIRST_SECONDS
        while True:
            time.sleep(POLL_SECONDS)
            web_exited = not web.running
            # Ctrl-C reaches the whole group: the web server may have stopped on it already.
            if signals_received:
                break
            if web_exited:
                logger.error("the web server exited (%s): stopping", _describe(web.proc))
                exit_code = 1
                break
            if worker is None:
                continue
            now = time.monotonic()
            if restart_at is None and not worker.running:
                if now - worker.started_at >= STABLE_SECONDS:
                    pause = RESTART_FIRST_SECONDS
                logger.warning("the worker exited (%s) after %.0f s; starting it again in %.0f s",
                               _describe(worker.proc), now - worker.started_at, pause)
                restart_at = now + pause
                pause = min(pause * 2, RESTART_MAX_SECONDS)
            elif restart_at is not None and now >= restart_at:
                restart_at = None
                worker.start()
                logger.info("started the worker again (pid %s)", worker.proc.pid)

        for child in children:
            child.send(signal.SIGTERM)
        # The worker stops its run's training process first: a heartbeat, then its grace.
        worker_wait = (settings.RLAB_HEARTBEAT_SECONDS + settings.RLAB_CANCEL_GRACE_SECONDS
                       + STOP_WAIT_SECONDS)
        web.wait(timeout=WEB_GRACEFUL_SECONDS + STOP_WAIT_SECONDS)
        if worker is not None:
            worker.wait(timeout=worker_wait)
        sys.exit(exit_code)


def _die_with_parent() -> None:
    """In the child, before it starts: Linux sends it SIGTERM when this process dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _describe(proc: subprocess.Popen | None) -> str:
    if proc is None or proc.returncode is None:
        return "still running"
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}"
    return f"exit code {proc.returncode}"
