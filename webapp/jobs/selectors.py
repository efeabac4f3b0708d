"""Reads for job templates. Access goes through `get_template_for_user`: members of the
template's team (viewers included) see it, everyone else gets 404, and a member whose role is
too low for the action gets 403."""

from __future__ import annotations

import shlex

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.jobs.models import JobTemplate
from webapp.jobs.parameters import Parameter, SpecError, command_split, parameters_parse
from webapp.jobs.script_spec import ScriptSpec, script_spec_of
from webapp.projects.models import Project
from webapp.teams.models import Role, Team
from webapp.teams.selectors import require_role, teams_for_user


def team_templates(team: Team) -> QuerySet[JobTemplate]:
    return JobTemplate.objects.filter(team=team).order_by("name")


def get_template_for_user(user, template_id: int, role: str = Role.VIEWER) -> JobTemplate:
    template = get_object_or_404(
        JobTemplate.objects.select_related("team").filter(team__in=teams_for_user(user)),
        pk=template_id)
    require_role(user, template.team_id, role)
    return template


def template_parameters(template: JobTemplate) -> list[Parameter]:
    """The template's parameters as saved (they were checked then); none if they no longer
    parse, which its launch then reports."""
    try:
        return parameters_parse(template.parameters)
    except SpecError:
        return []


def template_argv(template: JobTemplate) -> list[str]:
    try:
        return command_split(template.command)
    except SpecError:
        return [template.command]


def team_projects(team: Team) -> QuerySet[Project]:
    return Project.objects.filter(team=team).order_by("name")


def command_line(spec: ScriptSpec) -> str:
    """A script run's command as one line a shell would split back into its arguments."""
    return shlex.join(spec.argv)


def run_script(run) -> ScriptSpec | None:
    return script_spec_of(run.config)
