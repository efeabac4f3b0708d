"""The worker's entry point: the project's Celery app with the worker's tasks. Workers start with
`celery -A worker.celery worker -Q cpu` (or gpu); no beat is needed: each worker does the
housekeeping itself (worker.housekeeping)."""

from webapp.config.celery import app
from worker.devices import worker_devices

app.autodiscover_tasks(["worker"])

# Resolved now, as the worker starts (and kept for its pool's processes, which fork from it): a
# setting that asks for GPUs the machine lacks stops it here, not at its first run.
worker_devices()

__all__ = ["app"]
