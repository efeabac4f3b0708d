"""Writes for teams and accounts: creating teams, memberships and invitations, signing up, and
password reset links. Every function that changes a team takes the acting user and checks that
they are an admin of it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from webapp.teams.models import Invitation, Membership, Role, Team, role_allows

INVITATION_DAYS = 14


def team_create(*, name: str, user) -> Team:
    """A new team, with its creator as admin. ValidationError when the user is already in a team
    of that name (other users' teams may share it: their names are not told)."""
    if Team.objects.filter(memberships__user=user, name__iexact=name).exists():
        raise ValidationError("You are already in a team with this name: choose another.")
    with transaction.atomic():
        team = Team.objects.create(name=name)
        Membership.objects.create(team=team, user=user, role=Role.ADMIN)
    return team


def _require_admin(team: Team, actor) -> None:
    membership = Membership.objects.filter(team=team, user=actor).first()
    if membership is None or not role_allows(membership.role, Role.ADMIN):
        raise PermissionDenied("Only the team's admins can manage its members.")


def _keep_an_admin(team: Team, membership: Membership, new_role: str | None) -> None:
    if membership.role != Role.ADMIN or new_role == Role.ADMIN:
        return
    if not team.memberships.filter(role=Role.ADMIN).exclude(pk=membership.pk).exists():
        raise ValidationError("A team needs at least one admin: make someone else admin first.")


def membership_set_role(*, team: Team, actor, membership: Membership, role: str) -> Membership:
    _require_admin(team, actor)
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk, team=team)
        _keep_an_admin(team, membership, role)
        membership.role = Role(role)
        membership.save(update_fields=["role"])
    return membership


def membership_remove(*, team: Team, actor, membership: Membership) -> None:
    _require_admin(team, actor)
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk, team=team)
        _keep_an_admin(team, membership, None)
        membership.delete()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(*, team: Team, actor, email: str, role: str) -> tuple[Invitation, str]:
    """The invitation and its token; the token is shown once and never stored."""
    _require_admin(team, actor)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        team=team, email=email, role=Role(role), token_hash=_hash(token), invited_by=actor,
        expires_at=timezone.now() + timedelta(days=INVITATION_DAYS))
    return invitation, token


def invitation_find(*, token: str) -> Invitation | None:
    """The open invitation with this token, or None (unknown, used, revoked or expired)."""
    invitation = Invitation.objects.select_related("team").filter(token_hash=_hash(token)).first()
    return invitation if invitation is not None and invitation.is_open else None


def _invitation_claim(token: str) -> Invitation:
    """The open invitation with this token, its row locked until the transaction ends, so that
    of several people using one link at once, one gets it and the others see it used."""
    invitation = (Invitation.objects.select_for_update().filter(token_hash=_hash(token))
                  .first())
    if invitation is None or not invitation.is_open:
        raise ValidationError("This invitation link is not valid any more: it was used, "
                              "revoked or has expired. Ask a team admin for a new one.")
    return invitation


def _invitation_join(invitation: Invitation, user) -> Membership:
    membership, created = Membership.objects.get_or_create(
        team_id=invitation.team_id, user=user, defaults={"role": invitation.role})
    if not created and not role_allows(membership.role, invitation.role):
        membership.role = invitation.role
        membership.save(update_fields=["role"])
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def invitation_accept(*, token: str, user) -> Membership:
    """Make a signed-in user a member of the invitation's team; ValidationError when the link
    is not open any more."""
    with transaction.atomic():
        return _invitation_join(_invitation_claim(token), user)


def invitation_sign_up(*, token: str, username: str, password: str,
                       email: str = "") -> Membership:
    """A new account, a member of the invitation's team: the account, the membership and the
    use of the invitation are one transaction. Of several sign-ups on one link at once, one gets
    all three; the others get a ValidationError, and no account is created for them."""
    with transaction.atomic():
        invitation = _invitation_claim(token)
        try:
            with transaction.atomic():
                user = get_user_model().objects.create_user(username=username, email=email,
                                                            password=password)
        except IntegrityError:  # someone else signed up with this name meanwhile
            raise ValidationError(f"The username {username!r} was just taken: choose "
                                  f"another.") from None
        return _invitation_join(invitation, user)


def invitation_revoke(*, team: Team, actor, invitation: Invitation) -> None:
    _require_admin(team, actor)
    Invitation.objects.filter(pk=invitation.pk, team=team, accepted_at__isnull=True).update(
        revoked_at=timezone.now())


def password_reset_link(*, username: str, base_url: str) -> str:
    """A link at `base_url` where the user sets a new password, for an administrator to pass on
    (no mail needed). It works once: setting the password, or signing in, ends it; otherwise it
    lasts PASSWORD_RESET_TIMEOUT. ValidationError for an unknown or deactivated username."""
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError(f"There is no active account named {username!r}: check the "
                              f"spelling (usernames are case-sensitive).")
    path = reverse("password_reset_confirm", kwargs={
        "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user)})
    return base_url.rstrip("/") + path
