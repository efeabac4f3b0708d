"""Embedded mode in one command: migrate, then the ASGI web server and a Celery worker together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server (uvicorn) and a Celery worker together; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--queues", default="cpu,gpu",
                            help="Celery queues the worker takes runs from.")
        parser.add_argument("--no-worker", action="store_true", help="Start the web server only.")

    def handle(self, *args, host: str, port: int, queues: str, no_worker: bool, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        commands = [[sys.executable, "-m", "uvicorn", "webapp.config.asgi:application",
                     "--host", host, "--port", str(port), "--no-access-log"]]
        if not no_worker:
            commands.append([
                sys.executable, "-m", "celery", "-A", "worker.celery", "worker", "--beat",
                "--queues", queues, "--concurrency", "1", "--loglevel", "info",
                "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"),
            ])
        processes = [subprocess.Popen(command) for command in commands]
        self.stdout.write(f"rlab is serving on http://{host}:{port}/ (Ctrl-C stops it)")

        def stop(*_: object) -> None:
            for proc in processes:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(proc.poll() is None for proc in processes):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for proc in processes:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        failed = [proc for proc in processes if proc.returncode not in (0, -signal.SIGTERM)]
        if failed:
            sys.exit(1)
