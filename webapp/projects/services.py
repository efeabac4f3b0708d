"""Writes for projects: creating one (deleting one is webapp.deletion's: it removes what the apps
above this one keep in it)."""

from __future__ import annotations

from webapp.projects.models import Project
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role


def project_create(*, team: Team, name: str, description: str, user) -> Project:
    require_role(user, team.pk, Role.MEMBER)
    return Project.objects.create(team=team, name=name, description=description,
                                  created_by=user)
