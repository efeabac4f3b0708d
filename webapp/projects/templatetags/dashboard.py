"""The project's chart layout on a page: `{% load dashboard %}`, then

- `{% chart_grid project keys %}`: the layout (`chart_layout`, below) and an even grid of empty
  panels, one per metric of `keys` (in their default order), arranged by the layout; the page's
  chart script draws into them and appends a panel for a metric that appears later.
- `{% chart_layout project %}`: the layout alone, as JSON (once per page and project), for a page
  that builds its own `<div class="chart-grid" data-project="<id>">` of
  `<section class="chart-panel" data-panel="<metric key>">`.

webapp/static/dashboard.js arranges every such grid and, for members, adds the controls that
pin, move and resize panels and save the layout for the project."""

from __future__ import annotations

from collections.abc import Iterable

from django import template
from django.urls import reverse
from django.utils.html import json_script

from webapp.projects.models import Project
from webapp.projects.selectors import chart_panels
from webapp.teams.models import Role
from webapp.teams.selectors import user_has_role

register = template.Library()


def _layout_json(project: Project, user) -> str:
    return json_script({
        "layout": project.chart_layout or {"panels": []},
        "url": reverse("projects:chart_layout", args=[project.pk]),
        "canEdit": user_has_role(user, project.team_id, Role.MEMBER),
    }, f"chart-layout-{project.pk}")


@register.simple_tag(takes_context=True)
def chart_layout(context: template.Context, project: Project) -> str:
    return _layout_json(project, context["user"])


@register.inclusion_tag("projects/_chart_grid.html", takes_context=True)
def chart_grid(context: template.Context, project: Project, keys: Iterable[str]) -> dict:
    return {"project": project, "panels": chart_panels(project, keys),
            "layout_json": _layout_json(project, context["user"])}
