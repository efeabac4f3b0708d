"""Writes for projects: creating one (deleting one is webapp.deletion's: it removes what the apps
above this one keep in it), and saving how its chart panels are arranged, and its concurrency limit."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal

from webapp.common.inputs import text_problem
from webapp.projects.models import Project
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role


def project_create(*, team: Team, name: str, description: str, user) -> Project:
    require_role(user, team.pk, Role.MEMBER)
    return Project.objects.create(team=team, name=name, description=description,
                                  created_by=user)


# The project's chart layout ---------------------------------------------------------------------

# A panel's size in grid cells, columns × rows: the grid has three columns on a wide screen, and
# a wider panel takes every column the screen has (webapp/static/rlab.css).
PANEL_SIZES = ("1x1", "2x1", "3x1", "1x2", "2x2", "3x2")
DEFAULT_PANEL_SIZE = "1x1"
MAX_LAYOUT_PANELS = 500
MAX_METRIC_KEY = 250  # as metric keys are (MLflow's limit)
_PANEL_FIELDS = {"key", "pinned", "size", "hidden"}


def chart_layout_clean(layout: Any) -> dict:
    """The layout as stored, {"panels": [{"key", "pinned", "size", "hidden"}, …]} in the order
    shown, or
ValidationError saying what is wrong with it. Only this shape is kept: other fields,
    text Postgres cannot store, a key given twice, a size outside PANEL_SIZES are refused, not
    fixed.

    >>> chart_layout_clean({"panels": [{"key": "reward/mean", "pinned": True}]})
    {'panels': [{'key': 'reward/mean', 'pinned': True, 'size': '1x1', 'hidden': False}]}
    """
    if not isinstance(layout, dict) or set(layout) - {"panels"}:
        raise ValidationError('A chart layout is an object with one field, "panels": a list of '
                              '{"key", "pinned", "size", "hidden"}.')
    panels = layout.get("panels", [])
    if not isinstance(panels, list):
        raise ValidationError('"panels" must be a list.')
    if len(panels) > MAX_LAYOUT_PANELS:
        raise ValidationError(f"A chart layout holds at most {MAX_LAYOUT_PANELS} panels; this "
                              f"one has {len(panels)}.")
    cleaned, seen = [], set()
    for index, panel in enumerate(panels):
        where = f"Panel {index + 1}"
        if not isinstance(panel, dict) or "key" not in panel:
            raise ValidationError(f'{where} must be an object with a "key".')
        unknown = set(panel) - _PANEL_FIELDS
        if unknown:
            raise ValidationError(f"{where} has unknown fields: {', '.join(sorted(unknown))}; "
                                  f'a panel has "key", "pinned", "size" and "hidden".')
        key, size = panel["key"], panel.get("size", DEFAULT_PANEL_SIZE)
        pinned, hidden = panel.get("pinned", False), panel.get("hidden", False)
        if not isinstance(key, str) or not key or len(key) > MAX_METRIC_KEY:
            raise ValidationError(f"{where}: the key must be a metric key of 1 to "
                                  f"{MAX_METRIC_KEY} characters.")
        problem = text_problem(key)
        if problem:
            raise ValidationError(f"{where}: the key {problem}, which rlab cannot store.")
        if key in seen:
            raise ValidationError(f"{where}: the metric {key!r} has a panel already.")
        for name, value in (("pinned", pinned), ("hidden", hidden)):
            if not isinstance(value, bool):
                raise ValidationError(f'{where}: "{name}" must be true or false.')
        if size not in PANEL_SIZES:
            raise ValidationError(f"{where}: the size must be one of {', '.join(PANEL_SIZES)} "
                                  f"(columns × rows).")
        seen.add(key)
        cleaned.append({"key": key, "pinned": pinned, "size": size, "hidden": hidden})
    return {"panels": cleaned}


def project_chart_layout_save(*, project: Project, user, layout: Any) -> dict:
    """Store how the project's chart panels are arranged, for every run, group and comparison
    page of the project; a member's write. An empty list of panels is the default layout
    ("Reset layout"). Returns the layout as stored."""
    require_role(user, project.team_id, Role.MEMBER)
    cleaned = chart_layout_clean(layout)
    Project.objects.filter(pk=project.pk).update(chart_layout=cleaned)
    project.chart_layout = cleaned
    return cleaned


# The bounds of a project's concurrency limit (Project.max_concurrent_runs).
MAX_CONCURRENT_RUNS_BOUNDS = (1, 1000)

# Sent with `project` once a change of its concurrency limit is committed: webapp.queue, above
# this app, lets the runs a lower limit held back start (their tokens were dropped).
project_limit_changed = Signal()


def project_limit_set(*, project: Project, user, max_concurrent_runs: int | None) -> Project:
    """Set how many of the project's runs may start or run at once (None: no limit); an admin
    of its team only. A raised or cleared limit lets waiting runs start at once."""
    require_role(user, project.team_id, Role.ADMIN)
    low, high = MAX_CONCURRENT_RUNS_BOUNDS
    if max_concurrent_runs is not None and not low <= max_concurrent_runs <= high:
        raise ValidationError(f"A limit is between {low} and {high} runs at once, or empty for "
                              f"none; {max_concurrent_runs} is not.")
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(max_concurrent_runs=max_concurrent_runs)
        project.max_concurrent_runs = max_concurrent_runs
        transaction.on_commit(lambda: project_limit_changed.send(sender=Project,
                                                                 project=project))
    return project
