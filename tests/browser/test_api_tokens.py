"""API tokens in a real browser: create one from the nav link, see and copy it once, revoke it;
the same without JavaScript; and the API's interactive docs under the site's CSP."""

from __future__ import annotations

import hashlib
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from webapp.api.models import ApiToken
from webapp.api.tokens import token_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOKEN = re.compile(r"rlab_[0-9a-f]+_[A-Za-z0-9_-]+")


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: nothing here trains."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def test_a_token_is_shown_once_copied_and_revoked(page, user):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page)
    page.click("#nav-api-tokens")
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    expect(page.locator("#no-tokens")).to_be_visible()

    page.fill("#id_name", "laptop")
    page.get_by_role("button", name="Create token").click()
    panel = page.locator("#new-token")
    expect(panel).to_contain_text("it will not be shown again")
    token = page.input_value("#new-token-value")
    assert TOKEN.fullmatch(token)
    row = ApiToken.objects.get(user=user)
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    expect(panel.locator("#new-token-example")).to_contain_text(
        f'curl -H "Authorization: Bearer {token}" http')
    expect(page.locator(f"#token-{row.pk}")).to_contain_text(f"rlab_{row.prefix}_…")

    copy = panel.locator("button.copy")
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token

    page.reload()
    expect(page.locator(f"#token-{row.pk}")).to_contain_text("laptop")
    expect(page.locator("#new-token")).to_have_count(0)
    assert token not in page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke laptop").click()
    expect(page.locator(f"#token-{row.pk}")).to_contain_text("revoked")
    expect(page.get_by_role("button", name="Revoke laptop")).to_have_count(0)
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert token_user(token) is None


def test_tokens_work_without_javascript(browser, stack, user):
    context = browser.new_context(base_url=stack, java_script_enabled=False)
    page = context.new_page()
    sign_in(page)
    page.click("#nav-api-tokens")
    page.fill("#id_name", "cluster")
    page.get_by_role("button", name="Create token").click()
    token = page.input_value("#new-token-value")
    assert token_user(token) == user
    # the copy button comes with the script that makes it work
    expect(page.get_by_role("button", name="Copy")).to_have_count(0)

    page.goto("/settings/tokens/")
    page.get_by_role("button", name="Revoke cluster").click()
    expect(page.locator("#token-table")).to_contain_text("revoked")
    assert token_user(token) is None
    context.close()


def test_the_api_docs_render_under_the_content_security_policy(page, user):
    sign_in(page)
    page.click("#nav-api-tokens")
    page.click("#api-docs-link")
    expect(page).to_have_url(re.compile(r"/api/docs$"))
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("rlab API")
    operation = page.locator(".opblock").first
    operation.locator(".opblock-summary").click()
    expect(operation.locator(".opblock-body")).to_be_visible()
    page.locator(".btn.authorize").first.click()
    expect(page.locator(".modal-ux")).to_contain_text("Bearer")
    page.wait_for_load_state("networkidle")
