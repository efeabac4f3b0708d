"""Tests: real Postgres and Redis (they must be reachable; the suite fails, never skips, without them)."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rlab")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
# The model root that the tests' tiny models are registered under (tests/conftest.py builds
# them there, as local:tiny). Set in the environment, so the worker and web processes the tests
# start see the same one.
os.environ.setdefault("RLAB_MODEL_ROOTS", tempfile.mkdtemp(prefix="rlab-test-models-"))
# The artifact store of the test run, shared in the same way with the web processes.
os.environ.setdefault("RLAB_ARTIFACT_DIR", tempfile.mkdtemp(prefix="rlab-test-artifacts-"))

from webapp.config.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve static files straight from the source folders, as in development (no collectstatic).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
