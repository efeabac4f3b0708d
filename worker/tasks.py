"""Celery tasks: thin shells that take ids, re-read rows and call one service; and the worker's
start and shutdown, which run its housekeeping (worker.housekeeping)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import OperationalError
from django.db.models import Q

from webapp.artifacts import services as artifact_services
from webapp.experiments.models import ExperimentKind
from webapp.runs import services
from webapp.runs.models import Run
from worker.devices import worker_devices
from worker.housekeeping import Housekeeper, runs_interrupt_on_shutdown
from worker.script_supervisor import ScriptSupervisor
from worker.supervisor import RunSupervisor

logger = logging.getLogger(__name__)

WEEK = 7 * 24 * 3600


@shared_task(bind=True, name="worker.tasks.run_execute", acks_late=True,
             time_limit=WEEK, soft_time_limit=WEEK - 300,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def run_execute(self, run_id: int) -> None:
    """Claim the run that goes first on the queue of `run_id` (priority, then age, passing over
    runs a limit holds back; webapp.runs.services.run_claim_next) and supervise its training
    (or evaluation) process to the end. The message is a token: when no run may start, or the
    run is gone, it is dropped, and a run that ends sends one for the runs it held back."""
    worker = f"{self.request.hostname or 'worker'}"
    # The queue of the run the token names; if that run was deleted meanwhile, the queue the
    # token came on, whose queued runs may still start.
    queue = (Run.objects.filter(pk=run_id).values_list("queue", flat=True).first()
             or (self.request.delivery_info or {}).get("routing_key"))
    run_id = services.run_claim_next(queue=queue, worker=worker, passed_over=_passed_over(),
                                     devices=worker_devices()) if queue else None
    if run_id is None:
        logger.info("no queued run may start on this message's queue now, skipping")
        return
    created_at, kind, config, device_ids = Run.objects.values_list(
        "created_at", "experiment__kind", "config", "device_ids").get(pk=run_id)
    if kind == ExperimentKind.SCRIPT or "script" in config:
        ScriptSupervisor(run_id=run_id, config=config, created_at=created_at,
                         device_ids=device_ids).supervise()
        return
    config = services.run_worker_config(run_id=run_id)
    if config is None:
        return  # a model it names cannot be loaded any more; the run says why
    RunSupervisor(run_id=run_id, config=config, created_at=created_at, job=kind,
                  device_ids=device_ids).supervise()


def _passed_over() -> Q | None:
    """The runs this worker leaves to others: script runs, unless it was started with
    RLAB_WORKER_SCRIPTS (a script is any command a team's admin wrote, so a worker runs them
    only when its operator opts in)."""
    if settings.RLAB_WORKER_SCRIPTS:
        return None
    return Q(config__has_key="script") | Q(experiment__kind=ExperimentKind.SCRIPT)


@shared_task(name="worker.tasks.artifact_checkpoint_copy", acks_late=True,
             time_limit=4 * 3600, soft_time_limit=4 * 3600 - 60,
             autoretry_for=(OperationalError, OSError), retry_backoff=True, max_retries=5)
def artifact_checkpoint_copy(run_id: int, logged_model_id: str | None, folder: str) -> None:
    """Copy a model folder logged as artifacts to a bucket into the run's folder, and record it
    as a checkpoint of the run."""
    artifact_services.checkpoint_copy(run_id=run_id, logged_model_id=logged_model_id,
                                      folder=folder)


# This worker's housekeeping, started once it is ready (a consumer that reconnects to the broker
# is ready again: the thread is started once).
_housekeeper: Housekeeper | None = None


@worker_ready.connect
def _start_housekeeping(sender, **_: object) -> None:
    global _housekeeper
    if _housekeeper is None:
        _housekeeper = Housekeeper(worker_name=sender.hostname, consumer=sender)
        _housekeeper.start()


@worker_shutting_down.connect
def _interrupt_runs(sender: str, **_: object) -> None:
    """Warm shutdown (Ctrl-C, SIGTERM) waits for the running task; its run is marked interrupted
    now, so its supervisor stops the training process at its next heartbeat and the task ends."""
    if _housekeeper is not None:
        _housekeeper.stop(timeout=10)  # its pass under way would report the worker again
    runs_interrupt_on_shutdown(worker_name=sender)
