"""Several people signing up on one invitation link at the same moment, against a real uvicorn:
each request on its own thread and database connection in the server."""

from __future__ import annotations

import re
import threading

import pytest
import requests
from django.contrib.auth import get_user_model

from tests.stack import start_web
from webapp.teams import services
from webapp.teams.models import Invitation, Membership, Role

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SIGN_UPS = 4


def _sign_up_together(url: str, usernames: list[str]) -> list[requests.Response]:
    """Each username's sign-up form, opened first, then all posted at once."""
    barrier = threading.Barrier(len(usernames))
    responses: list[requests.Response | None] = [None] * len(usernames)

    def sign_up(index: int, username: str) -> None:
        session = requests.Session()
        page = session.get(url)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        form = {"username": username, "password1": "a-Long-pass-phrase-7",
                "password2": "a-Long-pass-phrase-7", "csrfmiddlewaretoken": token}
        barrier.wait()
        responses[index] = session.post(url, data=form, headers={"Referer": url},
                                        allow_redirects=False)

    threads = [threading.Thread(target=sign_up, args=(i, name))
               for i, name in enumerate(usernames)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def test_simultaneous_sign_ups_on_one_invitation_make_one_account(tmp_path, team, user):
    web, base_url = start_web(tmp_path)
    try:
        for round_ in range(3):  # a few rounds: the requests must overlap at least once
            _, token = services.invitation_create(team=team, actor=user, email="n@b.org",
                                                  role=Role.MEMBER)
            usernames = [f"newcomer-{round_}-{i}" for i in range(SIGN_UPS)]
            responses = _sign_up_together(f"{base_url}/invite/{token}/", usernames)

            codes = sorted(r.status_code for r in responses)
            assert codes.count(302) == 1 and all(code in (404, 422) for code in codes[1:]), codes
            for response in responses:
                if response.status_code == 422:  # lost the race with the form open
                    assert "This invitation link is not valid any more" in response.text
            created = get_user_model().objects.filter(username__in=usernames)
            assert created.count() == 1  # the winner's account, and no other
            winner = responses[[r.status_code for r in responses].index(302)]
            assert winner.headers["Location"] == team.get_absolute_url()
            membership = Membership.objects.get(user__in=created)
            assert (membership.team, membership.role) == (team, Role.MEMBER)
            assert Invitation.objects.get(token_hash=services._hash(token)).accepted_by \
                == membership.user
    finally:
        web.stop()


def test_a_username_taken_meanwhile_is_a_form_error(client, team, user, django_user_model):
    _, token = services.invitation_create(team=team, actor=user, email="n@b.org",
                                          role=Role.MEMBER)
    django_user_model.objects.create_user("newcomer", password="x-Long-pass-phrase-1")
    with pytest.raises(services.ValidationError, match="was just taken"):
        services.invitation_sign_up(token=token, username="newcomer",
                                    password="a-Long-pass-phrase-7")
    assert services.invitation_find(token=token) is not None  # still open for someone else
