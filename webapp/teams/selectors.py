"""Reads for teams, and the role checks every object lookup goes through.

The rule: someone who is not a member of an object's team gets 404 (the object does not exist
for them); a member whose role is too low for the action gets 403.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
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
    roles = (Membership.objects.filter(team_id=team_id, user_id=user.pk).order_by()
             .values_list("role", flat=True)[:1])
    return next(iter(roles), None)


def user_has_role(user, team_id: int, role: str) -> bool:
    """Whether the user is in the team with `role` or a higher one."""
    actual = role_in_team(user, team_id)
    return actual is not None and role_allows(actual, role)


def require_role(user, team_id: int, role: str) -> None:
    """PermissionDenied (403) unless the user has `role` or a higher one in the team."""
    require_role_of(role_in_team(user, team_id), role)


def require_role_of(actual: str | None, role: str) -> None:
    """PermissionDenied (403) unless `actual`, a user's role in a team, is `role` or higher."""
    if actual is None or not role_allows(actual, role):
        raise PermissionDenied(f"This needs the {Role(role).value} role in the team.")


def role_subquery(user, team_field: str) -> Subquery:
    """The user's role in the team that `team_field` (a path such as
    "experiment__project__team") leads to, as an annotation: None outside the team. One query
    then finds an object and the role its access check needs."""
    # Unordered: a membership's default ordering joins the user table, doubling the query's cost.
    return Subquery(Membership.objects.filter(team_id=OuterRef(team_field), user_id=user.pk)
                    .order_by().values("role")[:1])


def get_team_for_user(user, team_id: int, role: str = Role.VIEWER) -> Team:
    team = get_object_or_404(teams_for_user(user), pk=team_id)
    require_role(user, team.pk, role)
    return team
