# Load the Celery app with Django, so that it carries rlab's broker settings wherever Django is
# set up (the web app sends runs through it: webapp.runs.broker).
from webapp.config.celery import app as celery_app

__all__ = ("celery_app",)
