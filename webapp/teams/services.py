"""Writes for teams: creating them, memberships and invitations. Every function that changes a
team takes the acting user and checks that they are an admin of it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from webapp.teams.models import Invitation, Membership, Role, Team, role_allows

INVITATION_DAYS = 14


def team_create(*, name: str, user) -> Team:
    """A new team, with its creator as admin."""
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


def invitation_accept(*, token: str, user) -> Membership:
    with transaction.atomic():
        invitation = invitation_find(token=token)
        if invitation is None:
            raise ValidationError("This invitation link is not valid any more: it was used, "
                                  "revoked or has expired. Ask a team admin for a new one.")
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not invitation.is_open:
            raise ValidationError("This invitation link was just used.")
        membership, created = Membership.objects.get_or_create(
            team=invitation.team, user=user, defaults={"role": invitation.role})
        if not created and not role_allows(membership.role, invitation.role):
            membership.role = invitation.role
            membership.save(update_fields=["role"])
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def invitation_revoke(*, team: Team, actor, invitation: Invitation) -> None:
    _require_admin(team, actor)
    Invitation.objects.filter(pk=invitation.pk, team=team, accepted_at__isnull=True).update(
        revoked_at=timezone.now())
