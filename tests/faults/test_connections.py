"""The web server holds a Postgres connection only while a request uses it, or keeps it in its
pool (RLAB_DB_POOL_SIZE) for the next one. Under ASGI every request runs in a thread of its own,
so a connection kept open past the request outlives its thread; and an open run page waits
between events for as long as the user keeps it open. Either way, a few dozen pages and scripts
would use up Postgres's connections (100 by default) and every request would then fail."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from tests.stack import start_web
from webapp.api.tokens import token_create
from webapp.runs import ingestion, tracking
from webapp.runs.models import Run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _idle_connections() -> int:
    """Connections to the test database, but this process's, that wait for a query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid() AND state = 'idle'")
        return cursor.fetchone()[0]


@pytest.mark.parametrize("pool", [0, 2])
def test_api_requests_and_open_run_pages_hold_no_more_connections_than_the_pool(
        tmp_path, project, user, client, pool):
    experiment = tracking.tracked_experiment_get_or_create(project=project, user=user,
                                                           name="script")
    run = tracking.tracked_run_create(experiment=experiment, user=user, name="watched")
    token = token_create(user=user, name="test")[1]
    client.force_login(user)
    cookie = (f"{settings.SESSION_COOKIE_NAME}="
              f"{client.cookies[settings.SESSION_COOKIE_NAME].value}")
    web, base_url = start_web(tmp_path, RLAB_DB_POOL_SIZE=str(pool))
    parts = urlsplit(base_url)
    streams = []
    try:
        for step in range(40):
            body = json.dumps({"points": [{"key": "loss", "step": step, "value": 1.0}]}).encode()
            request = urllib.request.Request(
                f"{base_url}/api/runs/{run.pk}/metrics", data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        for _ in range(10):
            stream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            stream.request("GET", f"/runs/{run.pk}/events/", headers={"Cookie": cookie})
            assert stream.getresponse().status == 200
            streams.append(stream)
        ingestion.metrics_ingest(run_id=run.pk, points=[ingestion.MetricSample(
            "loss", 40, 1.0, Run.objects.get(pk=run.pk).created_at)])
        time.sleep(3)  # the run's feed reads the new point and every page renders it

        idle = _idle_connections()
        allowed = pool + 1  # the last request's may not be closed yet
        assert idle <= allowed, f"{idle} idle connections after 40 requests, with 10 pages open"
    finally:
        for stream in streams:
            stream.close()
        web.stop()
