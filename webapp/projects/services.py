"""Writes for projects: creating one (deleting one is webapp.deletion's: it removes what the apps
above this one keep in it)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal

from webapp.projects.models import Project
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role


def project_create(*, team: Team, name: str, description: str, user) -> Project:
    require_role(user, team.pk, Role.MEMBER)
    return Project.objects.create(team=team, name=name, description=description,
                                  created_by=user)


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
