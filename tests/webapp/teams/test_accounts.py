"""Accounts: team names that tell outsiders nothing, password change, and reset links made by an
administrator or, where this server sends mail, by email."""

from __future__ import annotations

import io
import re

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse

from webapp.teams import services
from webapp.teams.models import Membership, Role, Team

pytestmark = pytest.mark.django_db

NEW = "a-Fresh-pass-phrase-9"


def test_an_outsider_may_name_a_team_like_an_existing_one(client, team, other_user):
    client.force_login(other_user)
    response = client.post(reverse("teams:list"), {"name": team.name})
    assert response.status_code == 302  # nothing tells them that a team of this name exists
    assert Team.objects.filter(name=team.name).count() == 2


def test_a_user_cannot_be_in_two_teams_of_one_name(signed_in, team):
    response = signed_in.post(reverse("teams:list"), {"name": team.name.upper()})
    assert response.status_code == 422
    assert "already in a team with this name" in response.content.decode()
    assert Team.objects.count() == 1


def test_a_signed_in_user_changes_their_password(signed_in, user):
    assert 'href="/account/password/"' in signed_in.get(reverse("projects:list")).content.decode()
    wrong = signed_in.post(reverse("password_change"), {
        "old_password": "not-it", "new_password1": NEW, "new_password2": NEW})
    assert "Your old password was entered incorrectly" in wrong.content.decode()
    response = signed_in.post(reverse("password_change"), {
        "old_password": "lovelace-1843", "new_password1": NEW, "new_password2": NEW})
    assert response.status_code == 302
    assert signed_in.get(response["Location"]).status_code == 200
    user.refresh_from_db()
    assert user.check_password(NEW)


def _link(username: str) -> str:
    out = io.StringIO()
    call_command("password_link", username, "--url", "http://rlab.example", stdout=out)
    return out.getvalue().strip()


def test_an_administrators_link_sets_a_new_password_once(client, user):
    link = _link("ada")
    assert link.startswith("http://rlab.example/account/password/reset/")
    path = link.removeprefix("http://rlab.example")
    form_page = client.get(path, follow=True)
    assert "Set a new password" in form_page.content.decode()
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW,
                                                         "new_password2": NEW})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW)
    again = client.get(path, follow=True).content.decode()
    assert "Link not valid" in again


def test_a_link_for_an_unknown_user_is_refused_with_what_to_check(user):
    with pytest.raises(CommandError, match="no active account named 'Ada'"):
        _link("Ada")


def test_staff_make_reset_links_on_a_page_and_others_get_404(client, user, other_user):
    client.force_login(other_user)
    assert client.get(reverse("password_links")).status_code == 404
    other_user.is_staff = True
    other_user.save()
    page = client.get(reverse("projects:list")).content.decode()
    assert reverse("password_links") in page
    response = client.post(reverse("password_links"), {"username": "ada"})
    link = re.search(r"http://testserver(/account/password/reset/\S+?/)<",
                     response.content.decode()).group(1)
    assert "Set a new password" in client.get(link, follow=True).content.decode()


def test_reset_by_email_is_off_without_a_mail_server(client):
    assert client.get(reverse("password_reset")).status_code == 404
    assert "Ask an administrator for a reset link" in client.get(reverse("login")).content.decode()


def test_reset_by_email_sends_a_link_where_a_mail_server_is_set(client, user, settings):
    settings.RLAB_PASSWORD_RESET_BY_EMAIL = True
    user.email = "ada@example.org"
    user.save()
    response = client.post(reverse("password_reset"), {"email": "ada@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.org"]
    path = re.search(r"http://testserver(/account/password/reset/\S+)", mail.outbox[0].body)
    form_page = client.get(path.group(1), follow=True)
    client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW})
    user.refresh_from_db()
    assert user.check_password(NEW)


def test_signing_up_asks_for_an_email_only_where_mail_is_sent(client, team, user, settings):
    _, token = services.invitation_create(team=team, actor=user, email="n@b.org",
                                          role=Role.MEMBER)
    url = reverse("teams:invitation", args=[token])
    assert 'name="email"' not in client.get(url).content.decode()
    settings.RLAB_PASSWORD_RESET_BY_EMAIL = True
    assert 'name="email"' in client.get(url).content.decode()
    client.post(url, {"username": "newcomer", "email": "new@example.org",
                      "password1": NEW, "password2": NEW})
    assert Membership.objects.get(user__username="newcomer").user.email == "new@example.org"
