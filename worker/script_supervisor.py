"""Runs a script run's command (a job template rendered at launch, webapp.jobs.script_spec) and
relays its output into the run's log.

It is RunSupervisor's sibling and reuses its machinery (the run's folder, batched writes kept
while the database is down, heartbeats that see a cancel, the worker's shutdown or the run
deleted, stopping the process group, recording the end), but what it starts differs: the
template's argument list, never through a shell, as its own process group, in the template's
working folder or the run's own; and the process speaks no JSON events. Everything it prints on
stdout and stderr becomes log lines, with the run's secrets redacted; its exit code decides the
outcome. The trainer logs metrics itself, through the MLflow client or the rlab SDK, with the
run's own identity in its environment (`_script_environment`). Rollout files and checkpoint
folders it writes are taken in by a watcher thread (worker.script_outputs).

Output is read in blocks, never a line at a time, so a line without a newline cannot fill the
worker's memory: a line is cut every MAX_LINE_BYTES. The log keeps the first
RLAB_SCRIPT_LOG_HEAD_BYTES of output as it comes, and of the rest the last
RLAB_SCRIPT_LOG_TAIL_BYTES, written when the process ends after a line saying what was dropped
(`OutputBudget`)."""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection

from webapp.api.run_tokens import run_token_create
from webapp.jobs.script_spec import ScriptSpec, script_spec_of
from webapp.runs import services
from webapp.runs.models import Run
from worker.script_outputs import OutputWatcher
from worker.supervisor import FLUSH_SECONDS, RUN_GONE, RunSupervisor, _now, _signal_group

logger = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024
LAST_LINES = 30  # of output, in a failed run's error message
REDACTED = "[redacted]"
# What a script also sees of the worker's environment, besides what the built-in trainer sees
# (worker.supervisor.CHILD_ENV_*): the address of a Ray cluster the worker's machine belongs to,
# and the settings of the launchers and collective backends that distributed trainers use.
SCRIPT_ENV_NAMES = frozenset({"RAY_ADDRESS", "RAY_NAMESPACE", "RAY_JOB_ID"})
SCRIPT_ENV_PREFIXES = ("NCCL_", "GLOO_", "ACCELERATE_", "DS_")
# An environment variable whose value is a secret, redacted from the log when printed.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY",
                         re.IGNORECASE)


class OutputBudget:
    """What of a process's output reaches the log: every line until `head` bytes have gone by,
    then only the newest `tail` bytes, kept here until the end. Thread-safe: stdout's and
    stderr's readers share it."""

    def __init__(self, *, head: int, tail: int):
        self.head_left = head
        self.tail_limit = tail
        self.tail: deque[tuple[str, str, int]] = deque()  # (source, line, bytes read)
        self.tail_bytes = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.lock = threading.Lock()

    def admit(self, source: str, line: str, size: int) -> bool:
        """True when the line goes to the log now; otherwise it is held for the tail."""
        with self.lock:
            if self.head_left > 0 and not self.tail:
                self.head_left -= size
                return True
            self.tail.append((source, line, size))
            self.tail_bytes += size
            while self.tail_bytes > self.tail_limit and len(self.tail) > 1:
                _, _, dropped_size = self.tail.popleft()
                self.tail_bytes -= dropped_size
                self.dropped_lines += 1
                self.dropped_bytes += dropped_size
            return False

    def held_back(self) -> bool:
        with self.lock:
            return bool(self.tail)


class ScriptSupervisor(RunSupervisor):
    """Supervises one script run's process, from its start to the run's recorded end."""

    def __init__(self, *, run_id: int, config: dict[str, Any], created_at,
                 device_ids: list | None = None):
        super().__init__(run_id=run_id, config=config, created_at=created_at, job="script",
                         device_ids=device_ids or ())
        self.spec: ScriptSpec = script_spec_of(config)  # type: ignore[assignment]
        self.secrets: list[str] = []  # longest first, so that none is left half redacted
        self.budget = OutputBudget(head=settings.RLAB_SCRIPT_LOG_HEAD_BYTES,
                                   tail=settings.RLAB_SCRIPT_LOG_TAIL_BYTES)
        self.last_lines: deque[str] = deque(maxlen=LAST_LINES)
        self.told_held_back = False
        self.lines_lock = threading.Lock()

    def supervise(self) -> None:
        output_dir = self._output_dir_or_fail()
        if output_dir is None:
            return
        cwd, problem = self._working_dir(output_dir)
        if problem:
            services.run_fail(run_id=self.run_id, error_message=problem)
            return
        run = Run.objects.select_related("experiment").get(pk=self.run_id)
        token = run_token_create(run=run)
        env = self._script_environment(run, token, output_dir)
        self.secrets = sorted({token, *(value for name, value in env.items()
                                        if SECRET_NAME.search(name) and len(value) >= 8)},
                              key=len, reverse=True)
        try:
            proc = self._start_script(cwd, env)
        except (OSError, ValueError) as exc:
            services.run_fail(run_id=self.run_id, error_message=self._start_problem(exc))
            return
        self.pending.running = {"device": _device_label(self.device_ids), "total_steps": 0}
        watcher = OutputWatcher(run_id=self.run_id, run_folder=output_dir, spec=self.spec)
        watching = threading.Event()
        threads = [
            threading.Thread(target=self._read_output, args=(proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read_output, args=(proc.stderr, "stderr"), daemon=True),
            threading.Thread(target=self._watch, args=(watcher, watching), daemon=True),
        ]
        for thread in threads:
            thread.start()
        last_beat = time.monotonic()
        try:
            while proc.poll() is None:
                try:
                    proc.wait(timeout=FLUSH_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
                self._take_lines()
                self._flush()
                now = time.monotonic()
                if now - last_beat >= settings.RLAB_HEARTBEAT_SECONDS:
                    last_beat = now
                    if self._beat_ended(proc):
                        break
        except BaseException:
            self._stop(proc)
            raise
        finally:
            watching.set()
            self._stop_leftovers(proc, threads)
            self._take_lines(final=True)
            self._drain()
        self._finish(proc.wait())

    def _stop_leftovers(self, proc: subprocess.Popen, threads: list[threading.Thread]) -> None:
        """Once the command's process has ended, end the rest of its group too (a launcher's
        workers left behind would hold the run's devices), and wait for the output readers and
        the watcher's last scan."""
        readers, watcher = threads[:2], threads[2]
        for reader in readers:
            reader.join(timeout=1)
        if _group_alive(proc.pid):
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + settings.RLAB_CANCEL_GRACE_SECONDS
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            _signal_group(proc.pid, signal.SIGKILL)
        for reader in readers:
            reader.join(timeout=10)
        if not any(reader.is_alive() for reader in readers):
            proc.stdout.close()
            proc.stderr.close()
        watcher.join()

    def _working_dir(self, output_dir: Path) -> tuple[Path, str]:
        """The folder to run in, or a problem saying why there is none."""
        if self.spec is None or not self.spec.argv:
            return output_dir, ("The run's config has no command to run: its template names no "
                                "program. Launch it again from its template.")
        if not self.spec.working_dir:
            return output_dir, ""
        folder = Path(self.spec.working_dir)
        if not folder.is_absolute():
            return output_dir, (f"The template's working folder {self.spec.working_dir!r} is not "
                                "an absolute path: give a folder on the worker starting with /.")
        if not folder.is_dir():
            return output_dir, (f"The template's working folder {self.spec.working_dir} does not "
                                f"exist on the worker {self._worker_name()}: create it there, or "
                                "change the template.")
        return folder, ""

    def _start_script(self, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            [str(arg) for arg in self.spec.argv], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=cwd,
            env=env, bufsize=0)
        logger.info("run %s: started script process %s", self.run_id, proc.pid)
        return proc

    def _start_problem(self, exc: OSError | ValueError) -> str:
        program = self.spec.argv[0]
        if isinstance(exc, FileNotFoundError):
            return (f"The program {program!r} was not found on the worker "
                    f"{self._worker_name()}: install it there, or name it by its full path in "
                    "the template's command.")
        if isinstance(exc, PermissionError):
            return (f"The program {program!r} cannot be run on the worker "
                    f"{self._worker_name()} (permission denied): make it executable.")
        if isinstance(exc, ValueError):  # a NUL byte in an argument or the environment
            return f"The run's command cannot be started: {exc}."
        return f"The program {program!r} could not be started: {exc.strerror or exc}."

    def _worker_name(self) -> str:
        return Run.objects.filter(pk=self.run_id).values_list("worker", flat=True).first() or "?"

    def _script_environment(self, run: Run, token: str, output_dir: Path) -> dict[str, str]:
        """What the script sees: what the built-in trainer sees of the worker's environment
        (RunSupervisor._child_environment, with what it sets for the run's devices), a
        distributed engine's settings (SCRIPT_ENV_*), the template's variables, and
        the run's own identity, which the template cannot change: the MLflow client, the
        transformers/TRL callback (`report_to="mlflow"`) and the rlab SDK then log into this
        run, with a token that reaches only this run and only until it ends."""
        env = self._child_environment()
        env.update({name: value for name, value in os.environ.items()
                    if name in SCRIPT_ENV_NAMES or name.startswith(SCRIPT_ENV_PREFIXES)})
        env.update({str(name): str(value) for name, value in self.spec.environment.items()})
        base = settings.RLAB_URL.rstrip("/")
        env.update({
            "RLAB_URL": base, "RLAB_RUN_ID": str(run.pk), "RLAB_TOKEN": token,
            "RLAB_OUTPUT_DIR": str(output_dir),
            "MLFLOW_TRACKING_URI": f"{base}/mlflow/{run.experiment.project_id}",
            "MLFLOW_TRACKING_TOKEN": token, "MLFLOW_RUN_ID": str(run.pk),
            "PYTHONUNBUFFERED": "1",
        })
        # Set by a template, MLflow's client would send a password instead of the run's token,
        # or look for the run in another experiment and refuse to start.
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                     "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            env.pop(name, None)
        return env

    def _read_output(self, stream: IO[bytes], source: str) -> None:
        """Lines of `stream`, read a block at a time; a line longer than MAX_LINE_BYTES is cut
        into pieces of that size."""
        secrets = [secret.encode() for secret in self.secrets]
        # A piece is cut off only when a secret that starts in it would end in what was read.
        margin = max((len(secret) for secret in secrets), default=0)
        partial = b""
        while True:
            try:
                block = os.read(stream.fileno(), READ_BYTES)
            except OSError:
                break
            if not block:
                break
            partial += block
            *lines, partial = partial.split(b"\n")
            for line in lines:
                self._line(source, line)
            while len(partial) >= MAX_LINE_BYTES + margin:
                for secret in secrets:
                    partial = partial.replace(secret, REDACTED.encode())
                self._line(source, partial[:MAX_LINE_BYTES], newline=False)
                partial = partial[MAX_LINE_BYTES:]
        if partial:
            self._line(source, partial, newline=False)

    def _line(self, source: str, raw: bytes, *, newline: bool = True) -> None:
        size = len(raw) + newline
        # A progress bar redraws its line after each \r: keep what a terminal would show.
        text = raw.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1]
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if not text.strip():
            return
        with self.lines_lock:
            self.last_lines.append(text)
        if self.budget.admit(source, text, size):
            self.events.put({"kind": source, "message": text})

    def _take_lines(self, *, final: bool = False) -> None:
        """Move the lines read so far into the pending batch; at the end, the held tail too."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self.pending.logs.append(_output_line(event["kind"], event["message"]))
        if self.budget.held_back() and not self.told_held_back:
            self.told_held_back = True
            self.pending.logs.append((_now(), "warning", "worker", (
                f"The first {settings.RLAB_SCRIPT_LOG_HEAD_BYTES} bytes of output are logged; "
                f"of the rest, the last {settings.RLAB_SCRIPT_LOG_TAIL_BYTES} bytes are kept and "
                "logged when the process ends.")))
        if final and self.budget.held_back():
            budget = self.budget
            if budget.dropped_lines:
                self.pending.logs.append((_now(), "warning", "worker", (
                    f"… {budget.dropped_lines} lines ({budget.dropped_bytes} bytes) of output "
                    "were dropped here: the log keeps the first "
                    f"{settings.RLAB_SCRIPT_LOG_HEAD_BYTES} and the last "
                    f"{settings.RLAB_SCRIPT_LOG_TAIL_BYTES} bytes "
                    "(RLAB_SCRIPT_LOG_HEAD_BYTES, RLAB_SCRIPT_LOG_TAIL_BYTES).")))
            self.pending.logs.extend(_output_line(source, line) for source, line, _ in budget.tail)
            budget.tail.clear()

    def _watch(self, watcher: OutputWatcher, stop: threading.Event) -> None:
        """Scan for rollout files and checkpoints every RLAB_SCRIPT_SCAN_SECONDS while the
        process runs, and once more after it ended."""
        try:
            while not stop.wait(settings.RLAB_SCRIPT_SCAN_SECONDS):
                watcher.scan()
            if self.ended_as != RUN_GONE:
                watcher.scan(final=True)
        except Exception:
            logger.exception("run %s: its output watcher failed", self.run_id)
        finally:
            connection.close()  # this thread's own

    def _record_end(self, returncode: int) -> None:
        if self.ended_as is not None:
            super()._record_end(returncode)
        elif returncode == 0:
            services.run_succeed(run_id=self.run_id)
        else:
            services.run_fail(run_id=self.run_id, error_message=self._crash_message(returncode))

    def _crash_message(self, returncode: int) -> str:
        if returncode < 0:
            why = f"The script was killed by {signal.Signals(-returncode).name}"
        else:
            why = f"The script exited with code {returncode}"
        with self.lines_lock:
            tail = "\n".join(self.last_lines)
        return f"{why}.\n\nLast output:\n{tail}" if tail else f"{why}; it printed nothing."


def _device_label(device_ids: list) -> str:
    """The run's device as its pages show it: the GPUs its claim gave it, as the worker numbers
    them, or cpu (no devices, or CPU slots, which worker.devices names cpu<n>)."""
    gpus = [str(device) for device in device_ids if not str(device).startswith("cpu")]
    return f"cuda:{','.join(gpus)}" if gpus else "cpu"


def _output_line(source: str, message: str) -> tuple:
    """A log line of the process's output: from stdout at level info, from stderr at level
    stderr (as the built-in trainer's raw output)."""
    return (_now(), "stderr" if source == "stderr" else "info", source, message)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group is still there (zombies included, until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
