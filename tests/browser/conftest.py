"""Real-browser tests: Debian's chromium driven by Playwright, against the ASGI server and a
Celery worker started as separate processes on the test database."""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest
from playwright.sync_api import expect

from tests.stack import start_web, start_worker

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make
# between browser steps are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed; `make test` installs it with apt-get",
                    pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def stack(transactional_db, tmp_path, tiny_model):
    worker = start_worker(tmp_path)
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()
    worker.stop()


@contextlib.contextmanager
def checked_page(browser, base_url: str):
    """A page of a fresh browser context on `base_url`, failing the test at the end on any
    JavaScript error or Content-Security-Policy violation it saw."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The Content-Security-Policy reports what it blocks on the console: any such line means a
    # page relies on inline script or style, or on another origin.
    page.on("console", lambda msg: errors.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    yield page
    context.close()
    assert not errors, f"JavaScript errors or CSP violations on the page: {errors}"


@pytest.fixture
def page(browser, stack):
    with checked_page(browser, stack) as page:
        yield page


def sign_in(page, username: str = "ada", password: str = "lovelace-1843") -> None:
    """Sign in through the login form (the `user` fixture's credentials by default)."""
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
