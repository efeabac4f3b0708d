"""Reads for the group and statistics pages: a project's runs grouped as a query asks, and the
metrics the picked groups' runs logged."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.http import QueryDict

from webapp.groups.grouping import (
    BY_SEED,
    MAX_RUNS,
    Group,
    Grouping,
    grouping_parse,
    groups_pick,
    project_runs_to_group,
    runs_group,
    setting_values,
)
from webapp.projects.models import Project
from webapp.runs.metric_series import recorded_keys
from webapp.runs.selectors import HEADLINE_METRICS

KEY_RUNS = 100  # runs whose metric names are read for the metric pickers
SUGGESTED_SETTINGS = 200


@dataclass
class GroupedView:
    """The grouping a page asked for, its groups and the picked ones, or why there are none."""

    by: str
    keys: str  # the settings as typed, for the form
    groups: list[Group] = field(default_factory=list)
    picked: list[Group] = field(default_factory=list)
    error: str = ""
    runs: int = 0
    truncated: bool = False
    setting_keys: list[str] = field(default_factory=list)

    @property
    def picked_ids(self) -> set[str]:
        return {group.id for group in self.picked}


def grouped_view(user, project: Project, query: QueryDict) -> GroupedView:
    """The project's runs (those `user` sees) grouped as `query` asks (?by=, ?key=), and the
    groups it picks (?group=, repeated; all when none)."""
    view = GroupedView(by=query.get("by") or BY_SEED, keys=", ".join(query.getlist("key")))
    runs = project_runs_to_group(user, project)
    view.runs, view.truncated = len(runs), len(runs) == MAX_RUNS
    view.setting_keys = sorted({key for run in runs[:SUGGESTED_SETTINGS]
                                for key in setting_values(run)})
    try:
        grouping: Grouping = grouping_parse(query.get("by"), query.getlist("key"))
        view.groups = runs_group(runs, grouping) if runs else []
    except ValidationError as exc:
        view.error = " ".join(exc.messages)
        return view
    view.picked = groups_pick(view.groups, query.getlist("group"))
    return view


def metrics_of(groups: list[Group]) -> list[str]:
    """The metrics the groups' runs logged (of their first KEY_RUNS runs), headline ones
    first."""
    keys: set[str] = set()
    for run_id in [run.pk for group in groups for run in group.runs][:KEY_RUNS]:
        keys.update(recorded_keys(run_id))
    return [key for key in HEADLINE_METRICS if key in keys] + sorted(
        key for key in keys if key not in HEADLINE_METRICS)
