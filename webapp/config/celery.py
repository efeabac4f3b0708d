"""The project's Celery app: its settings come from Django's (CELERY_*). The web app only sends
through it (webapp.runs.broker); workers load it with their tasks from worker.celery."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings.local")

app = Celery("rlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
