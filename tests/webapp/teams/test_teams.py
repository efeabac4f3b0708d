from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from webapp.teams import services
from webapp.teams.models import Invitation, Membership, Role

pytestmark = pytest.mark.django_db


def test_the_creator_of_a_team_is_its_admin(team, user):
    assert Membership.objects.get(team=team, user=user).role == Role.ADMIN


def test_the_last_admin_cannot_leave_or_be_demoted(team, user):
    own = Membership.objects.get(team=team, user=user)
    with pytest.raises(ValidationError, match="at least one admin"):
        services.membership_set_role(team=team, actor=user, membership=own, role=Role.MEMBER)
    with pytest.raises(ValidationError, match="at least one admin"):
        services.membership_remove(team=team, actor=user, membership=own)


def test_only_admins_change_roles(team, member_of):
    member = member_of("member")
    viewer = Membership.objects.get(user=member_of("viewer"))
    with pytest.raises(PermissionDenied):
        services.membership_set_role(team=team, actor=member, membership=viewer,
                                     role=Role.ADMIN)


def test_an_invitation_token_is_stored_only_as_a_hash(team, user):
    invitation, token = services.invitation_create(team=team, actor=user, email="a@b.org",
                                                   role=Role.VIEWER)
    assert token not in invitation.token_hash
    assert services.invitation_find(token=token) == invitation


def test_an_invitation_works_once(team, user, other_user, django_user_model):
    _, token = services.invitation_create(team=team, actor=user, email="a@b.org",
                                          role=Role.VIEWER)
    membership = services.invitation_accept(token=token, user=other_user)
    assert (membership.team, membership.role) == (team, Role.VIEWER)
    third = django_user_model.objects.create_user("third", password="pw-third-12")
    with pytest.raises(ValidationError, match="not valid any more"):
        services.invitation_accept(token=token, user=third)


def test_expired_and_revoked_invitations_are_refused(team, user, other_user):
    old, old_token = services.invitation_create(team=team, actor=user, email="a@b.org",
                                                role=Role.VIEWER)
    Invitation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(1))
    revoked, revoked_token = services.invitation_create(team=team, actor=user,
                                                        email="c@d.org", role=Role.VIEWER)
    services.invitation_revoke(team=team, actor=user, invitation=revoked)
    for token in (old_token, revoked_token):
        with pytest.raises(ValidationError):
            services.invitation_accept(token=token, user=other_user)
    assert not Membership.objects.filter(user=other_user).exists()


def test_signing_up_from_an_invitation_joins_the_team(client, team, user):
    _, token = services.invitation_create(team=team, actor=user, email="n@b.org",
                                          role=Role.MEMBER)
    url = reverse("teams:invitation", args=[token])
    response = client.post(url, {"username": "newcomer", "password1": "a-Long-pass-phrase-7",
                                 "password2": "a-Long-pass-phrase-7"})
    assert response.status_code == 302
    membership = Membership.objects.get(user__username="newcomer")
    assert (membership.team, membership.role) == (team, Role.MEMBER)
    assert client.get(reverse("teams:detail", args=[team.pk])).status_code == 200


def test_weak_passwords_are_refused_at_sign_up(client, team, user):
    _, token = services.invitation_create(team=team, actor=user, email="n@b.org",
                                          role=Role.MEMBER)
    response = client.post(reverse("teams:invitation", args=[token]),
                           {"username": "newcomer", "password1": "12345678",
                            "password2": "12345678"})
    assert response.status_code == 422
    assert "too common" in response.content.decode()
    assert not Membership.objects.filter(user__username="newcomer").exists()


def test_an_admin_invites_from_the_team_page(client, team, user):
    client.force_login(user)
    response = client.post(reverse("teams:invite", args=[team.pk]),
                           {"email": "z@example.com", "role": "viewer"}, follow=True)
    assert "/invite/" in response.content.decode()
    assert Invitation.objects.get().email == "z@example.com"
