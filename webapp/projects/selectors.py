"""Reads for projects. Access goes through `get_project_for_user`: members of the project's team
see it, everyone else gets 404, and a member whose role is too low for the action gets 403."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ChartPanel:
    key: str
    pinned: bool
    size: str  # columns × rows, one of services.PANEL_SIZES
    default: int  # its place in the default order, where "Reset layout" puts it back
    hidden: bool = False  # left out of the grid until shown again


def chart_panels(project: Project, keys: Iterable[str]) -> list[ChartPanel]:
    """A page's chart panels, one per metric of `keys` (given in their default order), arranged
    by the project's layout: pinned panels first, then the others in the layout's order, then
    metrics the layout does not name, in their default order. webapp/static/dashboard.js
    arranges panels the same way in the browser.

    >>> project = Project(chart_layout={"panels": [
    ...     {"key": "b", "pinned": False, "size": "2x1"}, {"key": "c", "pinned": True,
    ...     "size": "1x1"}, {"key": "gone", "pinned": True, "size": "1x1"}]})
    >>> [(p.key, p.pinned, p.size) for p in chart_panels(project, ["a", "b", "c"])]
    [('c', True, '1x1'), ('b', False, '2x1'), ('a', False, '1x1')]
    """
    saved = {panel["key"]: (rank, panel) for rank, panel in
             enumerate((project.chart_layout or {}).get("panels", []))}
    panels = []
    for index, key in enumerate(dict.fromkeys(keys)):
        rank, panel = saved.get(key, (len(saved), {}))
        pinned = bool(panel.get("pinned"))
        panels.append(((0 if pinned else 1, rank, index),
                       ChartPanel(key=key, pinned=pinned, size=panel.get("size", "1x1"),
                                  default=index, hidden=bool(panel.get("hidden")))))
    return [panel for _, panel in sorted(panels, key=lambda pair: pair[0])]
