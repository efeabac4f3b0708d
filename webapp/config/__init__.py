# Load the Celery app with Django, so tasks enqueued from the web app (shared_task) go through
# rlab's broker settings instead of Celery's default app.
from worker.celery import app as celery_app

__all__ = ("celery_app",)
