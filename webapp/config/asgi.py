"""The web server's entry point (uvicorn, through webapp.config.web_server)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings.local")
# The web server, and only it, pools its Postgres connections (settings: RLAB_DB_POOL_SIZE).
os.environ.setdefault("RLAB_DB_POOL_SIZE", "8")
django_application = get_asgi_application()

from webapp.mlflow_compat.upload_limit import ArtifactUploadLimit  # noqa: E402  (after setup)

application = ArtifactUploadLimit(django_application)
