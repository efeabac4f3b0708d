"""The web server's command line (webapp.config.web_server): forwarded headers count only from
trusted proxies. Sign-in lockout is tried against a real uvicorn started with that command."""

from __future__ import annotations

import re
import sys

import pytest
import requests

from tests.stack import start_web
from tests.webapp.config.test_security import _settings_in_subprocess
from webapp.config.web_server import uvicorn_command

WRONG = {"username": "ada", "password": "wrong"}
RIGHT = {"username": "ada", "password": "lovelace-1843"}


def test_without_trusted_proxies_uvicorn_ignores_forwarded_headers(settings):
    settings.RLAB_TRUSTED_PROXIES = []
    command = uvicorn_command(host="0.0.0.0", port=8000, extra=["--workers", "2"])
    assert command[:4] == [sys.executable, "-m", "uvicorn", "webapp.config.asgi:application"]
    assert "--no-proxy-headers" in command and "--forwarded-allow-ips" not in command
    assert command[-2:] == ["--workers", "2"]


def test_trusted_proxies_are_the_only_ones_uvicorn_believes(settings):
    settings.RLAB_TRUSTED_PROXIES = ["10.0.0.5/32", "172.16.0.0/12"]
    command = uvicorn_command(host="127.0.0.1", port=8000)
    assert "--proxy-headers" in command
    assert command[command.index("--forwarded-allow-ips") + 1] == "10.0.0.5/32,172.16.0.0/12"


def test_a_malformed_trusted_proxy_stops_start_up_with_its_name():
    result = _settings_in_subprocess("webapp.config.settings.local", "pass",
                                     RLAB_TRUSTED_PROXIES="10.0.0.5, 10.0.0.300")
    assert result.returncode != 0
    assert "RLAB_TRUSTED_PROXIES: '10.0.0.300' is not an IP address or network" in result.stderr


def _sign_in(session: requests.Session, base_url: str, form: dict, forwarded_for: str) -> int:
    page = session.get(f"{base_url}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(f"{base_url}/login/", data={**form, "csrfmiddlewaretoken": token},
                            headers={"X-Forwarded-For": forwarded_for, "Referer": page.url},
                            allow_redirects=False)
    return response.status_code


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_new_forwarded_address_for_each_wrong_password_still_gets_locked_out(tmp_path, user):
    web, base_url = start_web(tmp_path)
    try:
        session = requests.Session()
        codes = [_sign_in(session, base_url, WRONG, f"203.0.113.{i}") for i in range(1, 6)]
        assert codes == [200, 200, 200, 200, 429]
        assert _sign_in(session, base_url, RIGHT, "203.0.113.99") == 429
    finally:
        web.stop()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_the_forwarded_client_is_the_one_locked_out(tmp_path, user,
                                                                           settings):
    settings.RLAB_TRUSTED_PROXIES = ["127.0.0.1/32"]
    web, base_url = start_web(tmp_path, RLAB_TRUSTED_PROXIES="127.0.0.1")
    try:
        session = requests.Session()
        codes = [_sign_in(session, base_url, WRONG, "203.0.113.7") for _ in range(5)]
        assert codes == [200, 200, 200, 200, 429]
        assert _sign_in(session, base_url, RIGHT, "203.0.113.7") == 429
        assert _sign_in(requests.Session(), base_url, RIGHT, "198.51.100.1") == 302
    finally:
        web.stop()
