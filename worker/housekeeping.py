"""Housekeeping: a thread in every worker's main process, never behind a run on the run queues.

Every RLAB_HOUSEKEEPING_SECONDS it marks interrupted the runs that an earlier, killed incarnation
of this worker left running, fails other runs whose worker stopped heartbeating, marks crashed
the tracked runs whose script went silent (a rule of their own: no worker runs them, and their
script is given RLAB_TRACKED_STALE_AFTER_SECONDS), and sends queued runs the broker may have
lost. Each step is a conditional UPDATE (the re-send locks the rows it sends), so every worker
doing it at once is harmless. It replaces a periodic task, which
waited behind any training run on a single-slot queue and so never ran while one trained.

Each pass first reports the worker itself (webapp.queue's Worker: its queues, device, slots,
the devices it gives runs, and a heartbeat), for the workers page and the queue's "why it waits".

When the worker shuts down (Ctrl-C, SIGTERM), its running runs are marked interrupted at once;
their supervisors see that at their next heartbeat and stop the training processes, and the
worker leaves the workers page.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
from collections import Counter
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from webapp.queue.services import worker_forget, worker_report
from webapp.runs import services
from webapp.runs.models import Run, RunStatus
from webapp.runs.tracking import tracked_runs_crash_stale
from worker.devices import worker_devices

logger = logging.getLogger(__name__)

# When this process started (it imports this module as it boots, before it takes any task): a
# run its worker's name claimed earlier was claimed by an earlier incarnation.
PROCESS_STARTED = timezone.now()


class Housekeeper:
    """The periodic pass of one worker, `worker_name`, in a daemon thread."""

    def __init__(self, *, worker_name: str, consumer: Any = None):
        """`consumer`: Celery's consumer of this worker (worker_ready's sender), which tells
        the queues it consumes and its pool's size; None reports no queues and one slot."""
        self.worker_name = worker_name
        self.consumer = consumer
        self.started_at = PROCESS_STARTED
        self.device = worker_device()
        self.devices = worker_devices()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rlab-housekeeping", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("housekeeping every %s s", settings.RLAB_HOUSEKEEPING_SECONDS)
        logger.info("devices for runs: %s", ", ".join(self.devices))
        if self.consumer is not None and pool_size(self.consumer) > len(self.devices):
            logger.warning(
                "this worker's pool runs %d tasks, but it has %d device(s) to give runs: at "
                "most %d run(s) at once; set RLAB_WORKER_DEVICES (on CPU, a count of slots) to "
                "run more", pool_size(self.consumer), len(self.devices), len(self.devices))

    def stop(self, timeout: float = 0) -> None:
        """Stop after the pass under way, waiting up to `timeout` seconds for it."""
        self._stopped.set()
        if timeout and self._thread.is_alive():
            self._thread.join(timeout)

    def report(self) -> None:
        """Record this worker as up, with what it consumes and has (webapp.queue)."""
        worker_report(name=self.worker_name, host=socket.gethostname(), pid=os.getpid(),
                      queues=consumed_queues(self.consumer), device=self.device,
                      slots=pool_size(self.consumer), started_at=self.started_at,
                      devices=self.devices)

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self._stopped.wait(settings.RLAB_HOUSEKEEPING_SECONDS):
                return

    def run_once(self) -> None:
        """One pass; a failure is logged and the next pass tries again."""
        try:
            if not self._stopped.is_set():  # a worker shutting down has left the list
                self.report()
            # Runs this process claimed are its own to end. (Not the runs its pool's tasks
            # name: a task's message is a token, and the run it claims may be another.) Of the
            # rest, only silent ones: a live worker of the same name (there should be none)
            # keeps its runs beating.
            services.runs_interrupt(
                worker=self.worker_name, keep=runs_claimed_since(self.worker_name,
                                                                 self.started_at),
                silent=True, reason=(
                    f"The worker {self.worker_name} was stopped without shutting down (killed, "
                    f"or its machine went down) while this run was running. Resume the run from "
                    f"its newest checkpoint, or launch the experiment again."))
            services.runs_fail_stale()  # after: this worker's own runs it can tell apart
            tracked_runs_crash_stale()
            services.runs_requeue()
        except DatabaseError as exc:
            logger.warning("housekeeping: database unavailable (%s); trying again in %s s", exc,
                           settings.RLAB_HOUSEKEEPING_SECONDS)
        except Exception:
            logger.exception("housekeeping pass failed; trying again in %s s",
                             settings.RLAB_HOUSEKEEPING_SECONDS)
        finally:
            connection.close()  # this thread's own; a pass a while later opens a fresh one


def runs_interrupt_on_shutdown(*, worker_name: str) -> None:
    """Mark interrupted every run this worker is running, and take the worker off the workers
    page, in a thread of its own (the caller is a signal handler, which may have interrupted the
    main thread inside a query)."""
    def interrupt() -> None:
        try:
            services.runs_interrupt(worker=worker_name, reason=(
                f"The worker {worker_name} shut down (Ctrl-C or SIGTERM: a restart or a "
                f"deploy) while this run was running. Resume the run from its newest "
                f"checkpoint, or launch the experiment again."))
            worker_forget(name=worker_name)
        except DatabaseError:
            logger.exception("could not mark the runs of %s interrupted; the stale-run check "
                             "will fail them", worker_name)
        finally:
            connection.close()

    thread = threading.Thread(target=interrupt, name="rlab-interrupt")
    thread.start()
    thread.join(timeout=30)


def runs_claimed_since(worker_name: str, since: datetime) -> list[int]:
    """The runs `worker_name` claimed at or after `since` that have not ended."""
    return list(Run.objects.filter(worker=worker_name, started_at__gte=since,
                                   status__in=[RunStatus.STARTING, RunStatus.RUNNING])
                .values_list("pk", flat=True))


def consumed_queues(consumer: Any) -> list[str]:
    """The queues `consumer` consumes now (a queue added or cancelled by remote control
    included)."""
    if consumer is None:
        return []
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is not None:
        return sorted({queue.name for queue in list(task_consumer.queues)})
    return sorted(consumer.app.amqp.queues.consume_from)


def pool_size(consumer: Any) -> int:
    """How many tasks, so runs, the worker runs at once: its pool's concurrency."""
    controller = getattr(consumer, "controller", None)
    concurrency = getattr(controller, "concurrency", None)
    return concurrency if isinstance(concurrency, int) and concurrency > 0 else 1


def worker_device() -> str:
    """What the worker has to train on, for the workers page: RLAB_WORKER_DEVICE if set, else
    the GPUs nvidia-smi lists ("cuda: NVIDIA H100 80GB HBM3", "cuda: 2 × NVIDIA A100"), else
    cpu. The worker never imports torch (its training processes do), so it asks the driver's
    tool, once, at start-up."""
    if settings.RLAB_WORKER_DEVICE:
        return settings.RLAB_WORKER_DEVICE
    if shutil.which("nvidia-smi") is None:
        return "cpu"
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "cpu"  # a driver that does not answer: no GPU this worker can use
    names = [line.strip() for line in listed.splitlines() if line.strip()]
    if not names:
        return "cpu"
    return "cuda: " + ", ".join(f"{count} × {name}" if count > 1 else name
                                for name, count in Counter(names).items())
