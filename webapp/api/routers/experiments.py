"""An experiment, and launching it: a training run, or an evaluation job on a model or one of
the project's checkpoints."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from webapp.api.schemas import READ_ERRORS, WRITE_ERRORS, ExperimentOut, LaunchIn, RunDetailOut
from webapp.experiments.selectors import get_experiment_for_user
from webapp.runs.selectors import get_checkpoint_for_user
from webapp.runs.services import evaluation_launch, run_launch
from webapp.teams.models import Role

router = Router(tags=["experiments"])


@router.get("/experiments/{experiment_id}", response={200: ExperimentOut, **READ_ERRORS},
            summary="Get an experiment")
def experiment_detail(request: HttpRequest, experiment_id: int):
    return get_experiment_for_user(request.user, experiment_id)


@router.post("/experiments/{experiment_id}/runs", response={201: RunDetailOut, **WRITE_ERRORS},
             summary="Launch a run or an evaluation job")
def experiment_launch(request: HttpRequest, experiment_id: int, payload: LaunchIn | None = None):
    """Queue a run of a training experiment with its current config (no body), or a job of an
    evaluation on `model` or on `checkpoint_id`. Needs the member role. A 422 says why it cannot
    run (an invalid config, a checkpoint whose folder is gone, a dataset that is missing)."""
    experiment = get_experiment_for_user(request.user, experiment_id, Role.MEMBER)
    payload = payload or LaunchIn()
    if payload.model or payload.checkpoint_id is not None:
        checkpoint = (get_checkpoint_for_user(request.user, payload.checkpoint_id)
                      if payload.checkpoint_id is not None else None)
        run = evaluation_launch(experiment=experiment, user=request.user, model=payload.model,
                                checkpoint=checkpoint)
    else:
        run = run_launch(experiment=experiment, user=request.user)
    return Status(201, run)
