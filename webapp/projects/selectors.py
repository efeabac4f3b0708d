"""Reads for projects. Access goes through `get_project_for_user`: members of the project's team
see it, everyone else gets 404, and a member whose role is too low for the action gets 403."""

from __future__ import annotations

from django.db.models import Count, Max, QuerySet
from django.shortcuts import get_object_or_404

from webapp.projects.models import Project
from webapp.teams.models import Role
from webapp.teams.selectors import require_role, teams_for_user


def projects_for_user(user) -> QuerySet[Project]:
    return Project.objects.filter(team__in=teams_for_user(user)).select_related("team")


def projects_with_stats(user) -> QuerySet[Project]:
    return projects_for_user(user).annotate(
        experiment_count=Count("experiments", distinct=True),
        last_run_at=Max("experiments__runs__created_at"),
    )


def get_project_for_user(user, project_id: int, role: str = Role.VIEWER) -> Project:
    project = get_object_or_404(projects_for_user(user), pk=project_id)
    require_role(user, project.team_id, role)
    return project
