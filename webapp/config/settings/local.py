"""Development and embedded mode: the default settings module."""

from webapp.config.settings.base import *  # noqa: F403
from webapp.config.settings.base import env_bool

DEBUG = env_bool("DEBUG", True)
