"""Celery tasks: thin shells that take ids, re-read rows and call one service."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.db import OperationalError

from webapp.runs import services
from webapp.runs.models import Run
from worker.supervisor import RunSupervisor

logger = logging.getLogger(__name__)

WEEK = 7 * 24 * 3600


@shared_task(bind=True, name="worker.tasks.run_execute", acks_late=True,
             time_limit=WEEK, soft_time_limit=WEEK - 300,
             autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def run_execute(self, run_id: int) -> None:
    """Claim the run and supervise its training (or evaluation) process to the end. A run claimed elsewhere,
    or already cancelled, is left alone: delivering this message twice is harmless."""
    worker = f"{self.request.hostname or 'worker'}"
    if not services.run_claim(run_id=run_id, worker=worker):
        logger.info("run %s: not queued any more, skipping", run_id)
        return
    config, created_at, kind = Run.objects.values_list(
        "config", "created_at", "experiment__kind").get(pk=run_id)
    RunSupervisor(run_id=run_id, config=config, created_at=created_at, job=kind).supervise()


@shared_task(name="worker.tasks.runs_reap_stale", time_limit=120,
             ignore_result=True)
def runs_reap_stale() -> int:
    return services.runs_fail_stale()


@worker_ready.connect
def _reap_on_start(**_: object) -> None:
    try:
        services.runs_fail_stale()
    except OperationalError:
        logger.exception("could not check for stale runs at start-up")
