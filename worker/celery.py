"""The Celery app. Workers start with `celery -A worker.celery worker -Q cpu` (or gpu)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings.local")

app = Celery("rlab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = {
    "fail-stale-runs": {"task": "worker.tasks.runs_reap_stale", "schedule": 60.0,
                        "options": {"queue": "cpu", "expires": 55}},
}
app.autodiscover_tasks(["worker"])
