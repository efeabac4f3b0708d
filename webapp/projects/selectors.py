"""Reads for projects. Access goes through `get_project_for_user`: the one place that decides who
sees a project (every signed-in user, until teams arrive), so outsiders get 404 everywhere."""

from django.db.models import Count, Max, QuerySet
from django.shortcuts import get_object_or_404

from webapp.projects.models import Project


def projects_for_user(user) -> QuerySet[Project]:
    return Project.objects.annotate(
        experiment_count=Count("experiments", distinct=True),
        last_run_at=Max("experiments__runs__created_at"),
    )


def get_project_for_user(user, project_id: int) -> Project:
    return get_object_or_404(projects_for_user(user), pk=project_id)
