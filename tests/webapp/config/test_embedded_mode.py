"""Embedded mode's settings (webapp.config.settings.local) served by a real uvicorn."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.stack import start_web
from tests.webapp.config.test_security import _settings_in_subprocess


def test_embedded_mode_runs_without_debug_unless_asked():
    code = "from django.conf import settings; print(settings.DEBUG)"
    assert _settings_in_subprocess("webapp.config.settings.local", code).stdout.split() == \
        ["False"]
    assert _settings_in_subprocess("webapp.config.settings.local", code,
                                   DEBUG="1").stdout.split() == ["True"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_embedded_mode_without_debug_serves_static_files_and_no_debug_pages(tmp_path):
    web, base_url = start_web(tmp_path, DJANGO_SETTINGS_MODULE="webapp.config.settings.local",
                              DEBUG="0")
    try:
        login = urllib.request.urlopen(f"{base_url}/login/", timeout=10).read().decode()
        assert "/static/rlab.css" in login
        for path in ("rlab.css", "live.js", "vendor/htmx-2.0.11.min.js"):
            assert urllib.request.urlopen(f"{base_url}/static/{path}", timeout=10).status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base_url}/no-such-page/", timeout=10)
        assert missing.value.code == 404
        assert "URLconf" not in missing.value.read().decode()  # not Django's debug page
    finally:
        web.stop()
