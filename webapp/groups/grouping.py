"""Runs of a project put into groups: by seed group (the config less its seed, the default), by
chosen settings (their values), or by a team tag.

A group's name says what sets it apart: the settings its runs share that differ across the
groups ("learning_rate=1e-06, kl.beta=0.04"), or, when no setting does, its experiments' names.
A run that lacks a chosen setting falls in that setting's "—" group; an untagged run in the
tag "—" group; a run with several tags is in each of its tags' groups (tags overlap, as W&B's
do), so the groups of a tag grouping may share runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from webapp.projects.models import Project
from webapp.reviews.models import RunTag
from webapp.runs.compare import MISSING, flatten
from webapp.runs.models import Run
from webapp.runs.seed_groups import NOT_THE_SETTING
from webapp.runs.selectors import runs_for_user

BY_SEED, BY_SETTINGS, BY_TAG = "seed", "settings", "tag"
GROUPINGS = {BY_SEED: "Seed group (config less the seed)", BY_SETTINGS: "Chosen settings",
             BY_TAG: "Team tag"}
MAX_RUNS = 5000  # the newest runs of a project that are grouped: a page, not a data export
MAX_KEYS = 8
MAX_PICKED = 8  # groups charted or compared at once
NAME_SETTINGS = 4  # settings named in a group's name; the rest are in its title


@dataclass
class Group:
    """Runs that belong together. `id` is stable across requests (a hash of what defines the
    group), so a link can pick groups by it."""

    id: str
    name: str
    runs: list[Run] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)  # settings all its runs share, as shown

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def run_ids(self) -> list[int]:
        return [run.pk for run in self.runs]


@dataclass(frozen=True)
class Grouping:
    by: str
    keys: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.by == BY_SETTINGS:
            return ", ".join(self.keys)
        return GROUPINGS[self.by].lower()


def grouping_parse(by: str | None, keys: list[str]) -> Grouping:
    """The grouping a page's query asks for (?by=seed|settings|tag&key=…); ValidationError
    with what to do for an unknown grouping or settings grouping without settings."""
    by = by or BY_SEED
    if by not in GROUPINGS:
        raise ValidationError(f"Group by one of {', '.join(GROUPINGS)}; {by!r} is not one.")
    # ?key=a&key=b and ?key=a,b both name two settings
    keys = list(dict.fromkeys(key.strip() for part in keys for key in part.split(",")
                              if key.strip()))
    if by == BY_SETTINGS:
        if not keys:
            raise ValidationError("Name one or more settings to group by, e.g. learning_rate.")
        if len(keys) > MAX_KEYS:
            raise ValidationError(f"Group by at most {MAX_KEYS} settings; {len(keys)} given.")
        if any(len(key) > 200 for key in keys):
            raise ValidationError("A setting's name is at most 200 characters.")
    return Grouping(by=by, keys=tuple(keys) if by == BY_SETTINGS else ())


def project_runs_to_group(user, project: Project) -> list[Run]:
    """The project's runs the user can see, newest first, at most MAX_RUNS."""
    return list(runs_for_user(user).filter(experiment__project=project)
                .order_by("-created_at", "-pk")[:MAX_RUNS])


def setting_values(run: Run) -> dict[str, Any]:
    """A run's settings as dotted keys, less those that say how it was started (the seed)."""
    return {key: value for key, value in flatten(run.config or {}).items()
            if key.split(".")[0] not in NOT_THE_SETTING}


def shown(value: Any) -> str:
    """A setting's value as a group's name shows it (JSON for lists and objects)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def group_id(by: str, key: Any) -> str:
    """A group's id in URLs (`?group=`): a hash of the grouping and the group's key, the same
    wherever the group is formed (this page, the runs table's group rows)."""
    return hashlib.sha1(f"{by}:{key}".encode()).hexdigest()[:12]


def runs_group(runs: list[Run], grouping: Grouping) -> list[Group]:
    """The runs in groups, largest first (then by name). ValidationError when the grouping puts
    every run of two or more in a group of its own: nothing would have a spread to show."""
    buckets: dict[str, list[Run]] = {}
    labels: dict[str, str] = {}
    if grouping.by == BY_TAG:
        tags: dict[int, list[str]] = {}
        for run_id, name in RunTag.objects.filter(run__in=runs).values_list("run_id", "name"):
            tags.setdefault(run_id, []).append(name)
        for run in runs:
            for tag in sorted(tags.get(run.pk, [MISSING])):
                buckets.setdefault(tag, []).append(run)
                labels[tag] = tag
    else:
        for run in runs:
            if grouping.by == BY_SEED:
                key = run.seed_group
            else:
                # any setting may be chosen, the seed too
                values = flatten(run.config or {})
                key = json.dumps([shown(values[k]) if k in values else None
                                  for k in grouping.keys])
                labels[key] = ", ".join(
                    f"{k}={shown(values[k]) if k in values else MISSING}" for k in grouping.keys)
            buckets.setdefault(key, []).append(run)
    groups = [Group(id=group_id(grouping.by, key),
                    name=labels.get(key, ""), runs=members)
              for key, members in buckets.items()]
    _name_by_settings(groups, named=grouping.by == BY_SEED)
    if len(runs) > 1 and all(group.n == 1 for group in groups):
        raise ValidationError(
            f"Grouping by {grouping.describe()} puts each of the {len(runs)} runs in a group of "
            "its own, so no group has a spread to show. Group by fewer settings, by seed group, "
            "or by a tag.")
    groups.sort(key=lambda group: (-group.n, group.name))
    return groups


def _name_by_settings(groups: list[Group], *, named: bool) -> None:
    """Fill each group's shared settings; when `named`, name it by those of them that differ
    across the groups, or by its experiments when none does."""
    for group in groups:
        values = [setting_values(run) for run in group.runs]
        common = set(values[0]).intersection(*values[1:]) if values else set()
        group.shared = {key: shown(values[0][key]) for key in sorted(common)
                        if all(shown(v[key]) == shown(values[0][key]) for v in values)}
    if not named:
        return
    keys = sorted({key for group in groups for key in group.shared})
    differing = [key for key in keys
                 if len({group.shared.get(key, MISSING) for group in groups}) > 1]
    for group in groups:
        parts = [f"{key}={group.shared.get(key, MISSING)}" for key in differing]
        if parts:
            more = len(parts) - NAME_SETTINGS
            group.name = ", ".join(parts[:NAME_SETTINGS]) + (f" (+{more} more)" if more > 0
                                                             else "")
        else:
            group.name = ", ".join(sorted({run.experiment.name for run in group.runs}))


def groups_pick(groups: list[Group], ids: list[str]) -> list[Group]:
    """The groups named by id, in the page's order; the largest when none is named; at most
    MAX_PICKED (one colour each in the charts' palette). An unknown id is left out without a
    word, as a shared link's stale pick would be."""
    wanted = set(ids)
    picked = [group for group in groups if group.id in wanted]
    return (picked or groups)[:MAX_PICKED]
