"""Reads for teams, and the role checks every object lookup goes through.

The rule: someone who is not a member of an object's team gets 404 (the object does not exist
for them); a member whose role is too low for the action gets 403.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.teams.models import Membership, Role, Team, role_allows


def teams_for_user(user) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def teams_where_user_can(user, role: str) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    allowed = [r for r in Role if role_allows(r, role)]
    # One filter() call, so both conditions hold for the same membership row.
    return Team.objects.filter(memberships__user=user, memberships__role__in=allowed)


def role_in_team(user, team_id: int) -> str | None:
    if not user.is_authenticated:
        return None
    return (Membership.objects.filter(team_id=team_id, user=user)
            .values_list("role", flat=True).first())


def user_has_role(user, team_id: int, role: str) -> bool:
    """Whether the user is in the team with `role` or a higher one."""
    actual = role_in_team(user, team_id)
    return actual is not None and role_allows(actual, role)


def require_role(user, team_id: int, role: str) -> None:
    """PermissionDenied (403) unless the user has `role` or a higher one in the team."""
    if not user_has_role(user, team_id, role):
        raise PermissionDenied(f"This needs the {Role(role).value} role in the team.")


def get_team_for_user(user, team_id: int, role: str = Role.VIEWER) -> Team:
    team = get_object_or_404(teams_for_user(user), pk=team_id)
    require_role(user, team.pk, role)
    return team
