"""The bridge between the web app and training: Celery app, tasks, and the run supervisor."""
