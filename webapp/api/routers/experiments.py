"""An experiment, launching it (a training run, or an evaluation job on a model or one of the
project's checkpoints), and deleting it."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Status
from ninja.errors import HttpError

from webapp.api.schemas import (
    READ_ERRORS,
    WRITE_ERRORS,
    ErrorOut,
    ExperimentOut,
    LaunchIn,
    RunDetailOut,
)
from webapp.deletion.services import experiment_delete
from webapp.experiments.selectors import get_experiment_for_user
from webapp.runs.selectors import get_checkpoint_for_user
from webapp.runs.services import evaluation_launch, run_launch, runs_launch_seeds
from webapp.teams.models import Role

router = Router(tags=["experiments"])


@router.get("/experiments/{experiment_id}", response={200: ExperimentOut, **READ_ERRORS},
            summary="Get an experiment")
def experiment_detail(request: HttpRequest, experiment_id: int):
    return get_experiment_for_user(request.user, experiment_id)


@router.delete("/experiments/{experiment_id}",
               response={204: None, 409: ErrorOut, **WRITE_ERRORS},
               summary="Delete an experiment")
def experiment_delete_endpoint(request: HttpRequest, experiment_id: int):
    """Delete the experiment (or evaluation) with all its runs, their data and folders, for
    good. Needs the admin role. While one of its runs is active or may still be stopping, or
    an active run loads one of its checkpoints, a 409 says what to do first."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.ADMIN)
    try:
        experiment_delete(experiment=experiment, user=request.user)
    except ValidationError as exc:
        raise HttpError(409, " ".join(exc.messages)) from None
    return Status(204, None)


@router.post("/experiments/{experiment_id}/runs",
             response={201: RunDetailOut | list[RunDetailOut], **WRITE_ERRORS},
             summary="Launch a run or an evaluation job")
def experiment_launch(request: HttpRequest, experiment_id: int, payload: LaunchIn | None = None):
    """Queue a run of a training experiment with its current config (no body), one run per seed
    of `seeds` (all or none; the answer is the list of runs), or a job of an evaluation on
    `model` or on `checkpoint_id`. Needs the member role. A 422 says why it cannot run (an
    invalid config, a checkpoint whose folder is gone, a dataset that is missing, a seed given
    twice)."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.MEMBER)
    payload = payload or LaunchIn()
    if payload.model or payload.checkpoint_id is not None:
        checkpoint = (get_checkpoint_for_user(request.user, payload.checkpoint_id)
                      if payload.checkpoint_id is not None else None)
        run = evaluation_launch(experiment=experiment, user=request.user, model=payload.model,
                                checkpoint=checkpoint)
    elif payload.seeds is not None:
        return Status(201, runs_launch_seeds(experiment=experiment, user=request.user,
                                             seeds=payload.seeds))
    else:
        run = run_launch(experiment=experiment, user=request.user)
    return Status(201, run)
