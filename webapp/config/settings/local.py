"""Embedded mode (and development): the default settings module.

DEBUG stays off unless asked for (DEBUG=1): a machine that serves rlab to others must not show
them tracebacks and settings. `manage.py serve` has no collectstatic step, so WhiteNoise serves
static files from their source folders, with or without DEBUG; production serves the collected,
hashed files (settings/production.py).
"""

from webapp.config.settings.base import *  # noqa: F403

WHITENOISE_USE_FINDERS = True
