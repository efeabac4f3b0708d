"""The Celery app. Workers start with `celery -A worker.celery worker -Q cpu` (or gpu); no beat is
needed: each worker does the housekeeping itself (worker.housekeeping)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings.local")

app = Celery("rlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["worker"])
