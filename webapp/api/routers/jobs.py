"""Job templates: list a team's (with their parameters' specs), read one, and launch one into a
project with parameter values, as the launch form does."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Router, Schema, Status
from ninja.errors import ValidationError as RequestInvalid
from pydantic import ConfigDict, Field

from webapp.api.schemas import READ_ERRORS, WRITE_ERRORS, RunDetailOut
from webapp.common.inputs import JsonObject, Text
from webapp.jobs.models import JobTemplate
from webapp.jobs.parameters import SpecError
from webapp.jobs.selectors import get_template_for_user, template_parameters
from webapp.jobs.services import script_run_launch
from webapp.projects.selectors import projects_for_user
from webapp.teams.models import Role
from webapp.teams.selectors import get_team_for_user, teams_for_user

router = Router(tags=["job templates"])


class TemplateParameterOut(Schema):
    name: str
    type: str = Field(description="int, float, str, bool or choice.")
    default: Any
    min: int | float | None
    max: int | float | None
    max_length: int
    regex: str
    choices: list[str]
    help: str
    required: bool
    allow_dash: bool = Field(description="Whether a text value may start with '-'.")


class JobTemplateOut(Schema):
    id: int
    team_id: int
    name: str
    description: str
    command: str = Field(description="Its command line with {name} placeholders.")
    parameters: list[TemplateParameterOut]
    queue: str
    devices: str = Field(description="A number, or an int parameter's {name}.")
    rollouts_format: str
    resumable: bool = Field(description="Whether its runs can be resumed from a checkpoint.")
    created_at: datetime
    updated_at: datetime
    url: str

    @staticmethod
    def resolve_parameters(template) -> list[dict]:
        return [parameter.to_dict() for parameter in template_parameters(template)]

    @staticmethod
    def resolve_resumable(template) -> bool:
        return bool(template.resume_arguments.strip())

    @staticmethod
    def resolve_url(template) -> str:
        return reverse("jobs:detail", args=[template.pk])


class TemplateLaunchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    project_id: int = Field(description="A project of the template's team.")
    values: JsonObject = Field(default_factory=dict, description="Parameter values by name; "
                               "numbers and bools typed or as text; missing: the default.")
    experiment_name: Annotated[Text, Field(max_length=120)] = Field(
        "", description="The script experiment its runs are grouped in; empty: the template's "
                        "name.")
    priority: int = Field(0, description="Higher runs first among the queue's waiting runs "
                                         "(-100 to 100).")


@router.get("/job-templates", response={200: list[JobTemplateOut], **READ_ERRORS},
            summary="List job templates")
def template_list(request: HttpRequest, team_id: int | None = None):
    """The job templates of your teams, or of the team `team_id` (404 for a team you are not
    in), by name."""
    templates = JobTemplate.objects.filter(team__in=teams_for_user(request.user))
    if team_id is not None:
        templates = templates.filter(team=get_team_for_user(request.user, team_id))
    return templates.order_by("team_id", "name")


@router.get("/job-templates/{template_id}", response={200: JobTemplateOut, **READ_ERRORS},
            summary="Get a job template")
def template_detail(request: HttpRequest, template_id: int):
    return get_template_for_user(request.user, template_id)


@router.post("/job-templates/{template_id}/launch",
             response={201: RunDetailOut, **WRITE_ERRORS}, summary="Launch a job template")
def template_launch(request: HttpRequest, template_id: int, payload: TemplateLaunchIn):
    """Queue a script run of the template in `project_id` with `values`. Needs the member role.
    A 422 names each value that does not fit (`values.lr`: above the maximum); nothing is
    created then."""
    template = get_template_for_user(request.user, template_id, Role.MEMBER)
    project = get_object_or_404(projects_for_user(request.user), pk=payload.project_id)
    try:
        run = script_run_launch(template=template, project=project, user=request.user,
                                values=payload.values, experiment_name=payload.experiment_name,
                                priority=payload.priority)
    except SpecError as exc:
        raise RequestInvalid([
            {"loc": ["body", *(["values"] if where not in ("experiment_name", "priority")
                               else []), where], "msg": message, "type": "value_error"}
            for where, message in exc.errors.items()]) from None
    return Status(201, run)
