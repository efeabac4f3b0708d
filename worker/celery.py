"""The worker's entry point: the project's Celery app with the worker's tasks. Workers start with
`celery -A worker.celery worker -Q cpu` (or gpu); no beat is needed: each worker does the
housekeeping itself (worker.housekeeping)."""

from webapp.config.celery import app

app.autodiscover_tasks(["worker"])

__all__ = ["app"]
