"""Projects (reading and deleting one), and the experiments defined in them."""

from __future__ import annotations

from django.core.exceptions import ValidationError as ServiceRefusal
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja import Router, Status
from ninja.errors import HttpError, ValidationError

from training.spec.config import ConfigError
from webapp.api.schemas import (
    LIST_ERRORS,
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorOut,
    ExperimentIn,
    ExperimentOut,
    ProjectOut,
)
from webapp.deletion.services import project_delete
from webapp.experiments.selectors import experiments_for_user
from webapp.experiments.services import experiment_create
from webapp.projects.selectors import get_project_for_user, projects_for_user
from webapp.teams.models import Role

router = Router(tags=["projects"])


@router.get("/projects", response={200: list[ProjectOut], **LIST_ERRORS},
            summary="List your projects")
def project_list(request: HttpRequest):
    """The projects of every team you are a member of, by name."""
    return projects_for_user(request.user)


@router.get("/projects/{project_id}", response={200: ProjectOut, **READ_ERRORS},
            summary="Get a project")
def project_detail(request: HttpRequest, project_id: int):
    return get_project_for_user(request.user, project_id)


@router.delete("/projects/{project_id}", response={204: None, 409: ErrorOut, **WRITE_ERRORS},
               summary="Delete a project")
def project_delete_endpoint(request: HttpRequest, project_id: int):
    """Delete the project with its experiments, runs and datasets, their data and files, for
    good. Needs the admin role. While one of its runs is active or may still be stopping, a
    409 says what to do first."""
    project = get_project_for_user(request.user, project_id, Role.ADMIN)
    try:
        project_delete(project=project, user=request.user)
    except ServiceRefusal as exc:
        raise HttpError(409, " ".join(exc.messages)) from None
    return Status(204, None)


@router.get("/projects/{project_id}/experiments", response={200: list[ExperimentOut],
                                                            **READ_ERRORS},
            summary="List a project's experiments")
def experiment_list(request: HttpRequest, project_id: int):
    """Training experiments and evaluations, newest first."""
    project = get_project_for_user(request.user, project_id)
    return experiments_for_user(request.user).filter(project=project)


@router.post("/projects/{project_id}/experiments",
             response={201: ExperimentOut, 409: ErrorOut, **WRITE_ERRORS},
             summary="Create an experiment")
def experiment_create_endpoint(request: HttpRequest, project_id: int, payload: ExperimentIn):
    """Define a training experiment or an evaluation. The config is checked as the trainer
    checks it: a 422 names every bad setting (`loc`: body, config, setting). Needs the member
    role; a name the project already uses is a 409."""
    project = get_project_for_user(request.user, project_id, Role.MEMBER)
    try:
        with transaction.atomic():
            experiment = experiment_create(
                project=project, author=request.user, name=payload.name,
                description=payload.description, config=payload.config, kind=payload.kind)
    except ConfigError as exc:
        raise ValidationError([{"loc": ["body", "config", name], "msg": message,
                                "type": "config"} for name, message in exc.errors.items()])
    except IntegrityError:
        raise HttpError(409, f"Project {project.name!r} already has an experiment or "
                             f"evaluation named {payload.name!r}: choose another name.")
    return Status(201, experiment)
