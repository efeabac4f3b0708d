"""Sending work on artifacts to a worker, by task name (the web app imports no worker module):
the copy of a bucket's model folder into its run's folder (services.checkpoint_copy).

A worker does it, not the request: a checkpoint is gigabytes, and the upload that completed it
must answer at once. A message the broker does not take is logged; the folder's next upload
sends it again."""

from __future__ import annotations

import logging

from webapp.config.celery import app
from webapp.runs.broker import _broker_errors, broker_connection

logger = logging.getLogger(__name__)

CHECKPOINT_COPY_TASK = "worker.tasks.artifact_checkpoint_copy"


def checkpoint_copy_send(*, run_id: int, logged_model_id: str | None, folder: str) -> bool:
    """Publish the copy of the model folder once; False (logged) when the broker did not take
    it."""
    with broker_connection() as connection:
        try:
            app.send_task(CHECKPOINT_COPY_TASK, args=[run_id, logged_model_id, folder],
                          connection=connection, retry=False)
        except _broker_errors(connection) as exc:
            logger.warning("run %s: the copy of model folder %r was not sent (%s)", run_id,
                           folder, exc)
            return False
    return True
