"""Security settings: CSP, login rate limiting, production cookie and HTTPS flags, env parsing."""

import os
import subprocess
import sys

import pytest
from django.urls import reverse

from tests.stack import ROOT

pytestmark = pytest.mark.django_db


def test_pages_carry_a_content_security_policy_without_inline_script(signed_in):
    policy = signed_in.get(reverse("projects:list"))["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_repeated_wrong_passwords_lock_the_account(client, user):
    for _ in range(4):
        response = client.post(reverse("login"), {"username": "ada", "password": "wrong"})
        assert response.status_code == 200
    fifth = client.post(reverse("login"), {"username": "ada", "password": "wrong"})
    assert fifth.status_code == 429
    locked = client.post(reverse("login"), {"username": "ada", "password": "lovelace-1843"})
    assert locked.status_code == 429
    assert "Too many sign-in attempts" in locked.content.decode()


def test_a_successful_login_clears_earlier_failures(client, user):
    for _ in range(4):
        client.post(reverse("login"), {"username": "ada", "password": "wrong"})
    assert client.post(reverse("login"), {"username": "ada",
                                          "password": "lovelace-1843"}).status_code == 302
    client.logout()
    for _ in range(4):
        client.post(reverse("login"), {"username": "ada", "password": "wrong"})
    assert client.post(reverse("login"), {"username": "ada",
                                          "password": "lovelace-1843"}).status_code == 302


def _settings_in_subprocess(module: str, code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    environment.update(DJANGO_SETTINGS_MODULE=module, **env)
    return subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


def test_production_settings_set_secure_cookies_and_hsts():
    code = ("from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0, "
            "s.SECURE_SSL_REDIRECT, s.DEBUG)")
    result = _settings_in_subprocess("webapp.config.settings.production", code,
                                     SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "True", "False"]


def test_production_refuses_the_development_secret_key():
    result = _settings_in_subprocess("webapp.config.settings.production", "pass")
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr


def test_a_malformed_setting_stops_start_up_with_its_name():
    result = _settings_in_subprocess("webapp.config.settings.local", "pass",
                                     RLAB_HEARTBEAT_SECONDS="soon")
    assert result.returncode != 0
    assert "RLAB_HEARTBEAT_SECONDS='soon' is not a whole number" in result.stderr
