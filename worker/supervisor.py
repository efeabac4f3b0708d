"""Runs one training process and relays what it reports into the database.

The child (`python -m training.process`) runs in its own process group, so a crash, an OOM kill or
a cancel never takes the worker down, and a cancel (or the worker's shutdown, which marks the
run interrupted) stops every process the trainer started.
It writes JSON-lines events (training/spec/events.py) on stdout; stderr is kept as log lines. It
runs in the run's folder, and sees of the worker's environment only what training needs.
The run's files (checkpoints) go to its own folder, `<RLAB_RUN_DIR>/run-<id>-<created>`: the
creation time keeps a run's folder its own even when a new database numbers runs from 1 again.
Events are written in batches; when the database is briefly unreachable the batch is kept and
written on a later flush, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from webapp.runs import ingestion, services
from worker.training_command import SAFE_PATH_ENV, training_command
from webapp.runs.files import run_folder_name
from webapp.runs.models import TERMINAL_STATUSES, RunStatus
from worker.devices import device_environment

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
STDERR_TAIL_LINES = 30
# Seconds to wait before each try at a final write while the database is unavailable.
RETRY_DELAYS = (0, 1, 2, 4, 8, 16, 32)
# What the training process may see of the worker's environment: what Python, the C runtime,
# torch, CUDA, OpenMP, transformers, the hub client and vLLM read (HF_TOKEN included, for gated
# hub models), and the proxy and CA settings of a machine that reaches the hub through a proxy.
CHILD_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
    "VIRTUAL_ENV", "LD_PRELOAD", "LD_LIBRARY_PATH", "XDG_CACHE_HOME",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
})
CHILD_ENV_PREFIXES = ("LC_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TOKENIZERS_", "CUDA_",
                      "NVIDIA_", "OMP_", "MKL_", "KMP_", "TORCH", "PYTORCH_", "TRITON_",
                      "VLLM_")
# The request of a run on several devices, in its folder (torchrun's processes get no stdin).
REQUEST_FILE = ".training-request.json"
# What a heartbeat reads when the run's row was deleted while it ran.
RUN_GONE = "gone"
# The log line of a run that a status set from outside ended.
ENDED_FROM_OUTSIDE = {
    RunStatus.CANCELLED: "Cancelled: the training process was stopped.",
    RunStatus.INTERRUPTED: "Interrupted: the worker is shutting down, so the training process "
                           "was stopped. Resume the run from its newest checkpoint.",
}


def _now() -> datetime:
    return datetime.now(dt_timezone.utc)


@dataclass
class _Pending:
    """Events read from the child and not yet in the database."""

    metrics: list[ingestion.MetricSample] = field(default_factory=list)
    rollouts: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)
    checkpoints: list[ingestion.CheckpointSaved] = field(default_factory=list)
    logs: list[tuple[datetime, str, str, str]] = field(default_factory=list)
    progress: tuple[int, int] | None = None
    running: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.metrics or self.rollouts or self.checkpoints or self.logs
                    or self.progress or self.running)


class RunSupervisor:
    def __init__(self, *, run_id: int, config: dict[str, Any], created_at: datetime,
                 job: str = "training", device_ids: Sequence[str] = ()):
        self.run_id = run_id
        self.config = config
        self.device_ids = list(device_ids)  # the worker's devices its claim gave the run
        self.job = job  # "training", or "evaluation": the child's job (training.process)
        self.folder_name = run_folder_name(run_id, created_at)
        self.pending = _Pending()
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.outcome: dict[str, Any] | None = None  # the child's "done" or "error" event
        self.ended_as: str | None = None  # the status that ended the run from outside

    def supervise(self) -> None:
        output_dir = self._output_dir_or_fail()
        if output_dir is None:
            return
        proc = self._start(output_dir)
        readers = [
            threading.Thread(target=self._read_events, args=(proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc.stderr,), daemon=True),
        ]
        for reader in readers:
            reader.start()
        last_flush = last_beat = time.monotonic()
        stdout_open = True
        try:
            while stdout_open or proc.poll() is None:
                try:
                    event = self.events.get(timeout=FLUSH_SECONDS)
                    if event is None:
                        stdout_open = False
                    else:
                        self._take(event)
                except queue.Empty:
                    pass
                now = time.monotonic()
                if now - last_flush >= FLUSH_SECONDS:
                    self._flush()
                    last_flush = now
                if now - last_beat >= settings.RLAB_HEARTBEAT_SECONDS:
                    last_beat = now
                    if self._beat_ended(proc):
                        break
                if not stdout_open and proc.poll() is None:
                    try:  # events ended: the process is exiting, or hung on its way out
                        proc.wait(timeout=settings.RLAB_CANCEL_GRACE_SECONDS + 5)
                    except subprocess.TimeoutExpired:
                        self._stop(proc)
        except BaseException:
            self._stop(proc)
            raise
        finally:
            for reader in readers:
                reader.join(timeout=5)
            self._drain()
        self._finish(proc.wait())

    def _output_dir_or_fail(self) -> Path | None:
        """The run's folder, made if new; None, with the run failed, when it cannot be."""
        try:
            return self._make_output_dir()
        except OSError as exc:
            logger.error("run %s: cannot create its folder: %s", self.run_id, exc)
            services.run_fail(run_id=self.run_id, error_message=(
                f"The worker cannot create the run's folder ({exc}). Set RLAB_RUN_DIR to a "
                f"folder the worker can write to."))
            return None

    def _make_output_dir(self) -> Path:
        output_dir = Path(settings.RLAB_RUN_DIR) / self.folder_name
        output_dir.mkdir(parents=True, exist_ok=True)
        return output_dir.resolve()

    def _start(self, output_dir: Path) -> subprocess.Popen:
        # In the run's own folder, so that a relative path (a model named like a local folder)
        # reaches nothing else; -P keeps that folder off the import path, PYTHONPATH puts the
        # code's root on it.
        # A run on several devices is one process per device under torchrun
        # (worker.training_command), which reads its request from a file instead of stdin.
        request = json.dumps({"run_id": self.run_id, "job": self.job, "config": self.config,
                              "output_dir": str(output_dir)})
        devices = int(self.config.get("devices", 1))
        request_path = output_dir / REQUEST_FILE if devices > 1 else None
        if request_path is not None:
            request_path.write_text(request, encoding="utf-8")
        proc = subprocess.Popen(
            training_command(devices, request_path),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, cwd=output_dir,
            env={**self._child_environment(), **SAFE_PATH_ENV},
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        assert proc.stdin is not None
        if request_path is None:
            proc.stdin.write(request)
        proc.stdin.close()
        logger.info("run %s: started training process %s", self.run_id, proc.pid)
        return proc

    def _child_environment(self) -> dict[str, str]:
        """The worker's environment, filtered to what the training process needs (CHILD_ENV_*):
        it runs models and code paths that a member chooses, so it gets no database or broker
        address, no secret key, no cloud credentials."""
        env = {name: value for name, value in os.environ.items()
               if name in CHILD_ENV_NAMES or name.startswith(CHILD_ENV_PREFIXES)}
        code_root = str(settings.BASE_DIR)
        env["PYTHONPATH"] = os.pathsep.join(
            [code_root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
        env.update(RLAB_MODEL_CACHE=settings.RLAB_MODEL_CACHE, RLAB_RUN_ID=str(self.run_id),
                   PYTHONUNBUFFERED="1")
        env.update(device_environment(self.device_ids))  # its own devices, none of the others
        return env

    def _read_events(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"kind": "log", "level": "warning", "message": line}
            self.events.put(event)
        self.events.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if line.strip():
                self.stderr_tail.append(line)
                self.events.put({"kind": "stderr", "message": line})

    def _take(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "metrics":
            wall = datetime.fromtimestamp(float(event.get("time", time.time())), dt_timezone.utc)
            step = int(event["step"])
            self.pending.metrics.extend(
                ingestion.MetricSample(key=k, step=step, value=float(v), wall_time=wall)
                for k, v in event.get("values", {}).items())
        elif kind == "rollouts":
            self.pending.rollouts.append((int(event["step"]), list(event.get("items", []))))
        elif kind == "checkpoint":
            self.pending.checkpoints.append(ingestion.CheckpointSaved(
                step=int(event["step"]), path=str(event["path"]),
                final=bool(event.get("final", False))))
        elif kind == "progress":
            self.pending.progress = (int(event["step"]), int(event["total_steps"]))
        elif kind == "status" and event.get("status") == "running":
            self.pending.running = event
        elif kind == "log":
            self.pending.logs.append((_now(), str(event.get("level", "info")), "trainer",
                                      str(event.get("message", ""))))
        elif kind == "stderr":
            self.pending.logs.append((_now(), "stderr", "stderr", event["message"]))
        elif kind in ("done", "error"):
            self.outcome = event

    def _flush(self) -> bool:
        """Write what is pending in one transaction; on a database error keep it for later."""
        if not self.pending:
            return True
        pending = self.pending
        try:
            with transaction.atomic():
                if pending.running is not None:
                    services.run_mark_running(
                        run_id=self.run_id, device=str(pending.running.get("device", "")),
                        total_steps=int(pending.running.get("total_steps", 0)))
                ingestion.metrics_ingest(run_id=self.run_id, points=pending.metrics)
                for step, items in pending.rollouts:
                    ingestion.rollouts_ingest(run_id=self.run_id, step=step, items=items)
                ingestion.checkpoints_ingest(run_id=self.run_id, checkpoints=pending.checkpoints)
                ingestion.logs_append(run_id=self.run_id, lines=pending.logs)
                if pending.progress is not None:
                    step, total = pending.progress
                    services.run_progress(run_id=self.run_id, step=step, total_steps=total)
        except DatabaseError:
            logger.warning("run %s: database unavailable, keeping %d metric points for later",
                           self.run_id, len(pending.metrics), exc_info=True)
            self._reset_connection()
            return False
        self.pending = _Pending()
        return True

    def _beat_ended(self, proc: subprocess.Popen) -> bool:
        """Heartbeat; when the run was ended from outside (cancelled, its worker shutting down,
        or deleted under it), record how and stop the process."""
        status = self._beat()
        if status in TERMINAL_STATUSES or status == RUN_GONE:
            self.ended_as = status
            self._stop(proc)
            return True
        return False

    def _beat(self) -> str | None:
        """The run's status, RUN_GONE if its row is gone, None if the database did not answer."""
        try:
            return services.run_heartbeat(run_id=self.run_id) or RUN_GONE
        except DatabaseError:
            logger.warning("run %s: heartbeat failed, database unavailable", self.run_id)
            self._reset_connection()
            return None

    @staticmethod
    def _reset_connection() -> None:
        """Drop the broken connection; Django opens a new one on the next query."""
        try:
            connection.close()
        except DatabaseError:
            pass

    def _stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the grace period."""
        if proc.poll() is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=settings.RLAB_CANCEL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        logger.info("run %s: training process stopped", self.run_id)

    def _drain(self) -> None:
        if self.ended_as == RUN_GONE:
            return  # nowhere to write what is left
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self._take(event)
        for delay in RETRY_DELAYS:
            time.sleep(delay)
            if self._flush():
                return
        logger.error("run %s: could not store its last events; the database stayed down",
                     self.run_id)

    def _finish(self, returncode: int) -> None:
        """Record how the run ended, retrying while the database is unavailable."""
        for delay in RETRY_DELAYS:
            time.sleep(delay)
            try:
                self._record_end(returncode)
                return
            except DatabaseError:
                logger.warning("run %s: cannot record its end yet, database unavailable",
                               self.run_id)
                self._reset_connection()
        logger.error("run %s: could not record its end; the stale-run check will fail it",
                     self.run_id)

    def _record_end(self, returncode: int) -> None:
        if self.ended_as == RUN_GONE:
            logger.info("run %s: deleted while it ran; training process stopped", self.run_id)
            return
        if self.ended_as is not None:
            ingestion.logs_append(run_id=self.run_id, lines=[
                (_now(), "info", "worker", ENDED_FROM_OUTSIDE.get(
                    self.ended_as, f"The run was marked {self.ended_as}: the training process "
                                   f"was stopped."))])
            return
        outcome = self.outcome or {}
        if outcome.get("kind") == "done" and returncode == 0:
            services.run_succeed(run_id=self.run_id)
        elif outcome.get("kind") == "error":
            services.run_fail(run_id=self.run_id, error_message=str(outcome.get("message")))
        else:
            services.run_fail(run_id=self.run_id, error_message=self._crash_message(returncode))

    def _crash_message(self, returncode: int) -> str:
        if returncode < 0:
            name = signal.Signals(-returncode).name
            why = f"The training process was killed by {name}"
            if returncode == -signal.SIGKILL:
                why += " (often the out-of-memory killer: try a smaller micro-batch size or model)"
        elif returncode == 0:
            why = "The training process was stopped from outside before it finished"
        else:
            why = f"The training process exited with code {returncode} without reporting an error"
        tail = "\n".join(self.stderr_tail)
        return f"{why}.\n\nLast output:\n{tail}" if tail else f"{why}."


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
