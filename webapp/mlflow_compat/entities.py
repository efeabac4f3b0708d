"""rlab's experiments and runs as MLflow's JSON entities: millisecond timestamps, statuses, and
numbers that may be "NaN" (what the client sends is read by webapp.mlflow_compat.bodies)."""

from __future__ import annotations

import math
from datetime import datetime

from webapp.experiments.models import Experiment
from webapp.runs.metric_series import key_spans, recorded_keys
from webapp.runs.models import DatasetInput, MetricPoint, Run, RunStatus

# MLflow's run statuses, as rlab's. SCHEDULED is how a script may open a run it starts later:
# a tracked run is running from the start either way.
STATUS_FROM_MLFLOW = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.RUNNING,
    "FINISHED": RunStatus.SUCCEEDED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.CANCELLED,
}
STATUS_TO_MLFLOW = {
    RunStatus.QUEUED: "SCHEDULED",
    RunStatus.STARTING: "SCHEDULED",
    RunStatus.RUNNING: "RUNNING",
    RunStatus.SUCCEEDED: "FINISHED",
    RunStatus.FAILED: "FAILED",
    RunStatus.CANCELLED: "KILLED",
    RunStatus.INTERRUPTED: "KILLED",
    # MLflow has no word for a run whose script went silent: it did not finish.
    RunStatus.CRASHED: "FAILED",
}

# MLflow's default experiment, which a script logs to when it sets none.
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
RUN_NAME_TAG = "mlflow.runName"


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def number_out(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def experiment_json(experiment: Experiment) -> dict:
    return {"experiment_id": str(experiment.pk), "name": experiment.name,
            "artifact_location": "", "lifecycle_stage": "active",
            "creation_time": ms(experiment.created_at),
            "last_update_time": ms(experiment.updated_at), "tags": []}


def run_name(run: Run) -> str:
    return run.name or str(run)


def artifact_uri(*, experiment_id: int, run_id: int | None = None,
                 model_id: str | None = None) -> str:
    """The artifact URI of a run or a logged model: the client resolves it against the tracking
    URI and sends their files to this server's artifact proxy (webapp.mlflow_compat.artifacts)."""
    owner = f"models/{model_id}" if model_id is not None else str(run_id)
    return f"mlflow-artifacts:/{experiment_id}/{owner}/artifacts"


def run_info_json(run: Run) -> dict:
    """The run's info, with the artifact URI its files are logged to."""
    info = {"run_id": str(run.pk), "run_uuid": str(run.pk), "run_name": run_name(run),
            "experiment_id": str(run.experiment_id), "user_id": run.launched_by.username,
            "status": STATUS_TO_MLFLOW[run.status], "start_time": ms(run.started_at),
            "artifact_uri": artifact_uri(experiment_id=run.experiment_id, run_id=run.pk),
            "lifecycle_stage": "active"}
    if run.finished_at is not None:
        info["end_time"] = ms(run.finished_at)
    return info


def point_json(point: MetricPoint) -> dict:
    """A metric point as MLflow's Metric."""
    return {"key": point.key, "value": number_out(point.value),
            "timestamp": ms(point.wall_time), "step": point.step}


def run_json(run: Run, latest: list[MetricPoint] | None = None) -> dict:
    """Info and data: each metric's last point (MLflow's "latest metrics"; `latest` when the
    caller has read them already, as a search does for a page of runs), the parameters and the
    tags; and inputs: the datasets it logged."""
    if latest is None:
        spans = key_spans(run.pk, recorded_keys(run.pk))
        metrics = [{"key": key, "value": number_out(span.last[1]),
                    "timestamp": int(span.last[2] * 1000), "step": span.last[0]}
                   for key, span in spans.items()]
    else:
        metrics = [point_json(point) for point in latest]
    params = [{"key": key, "value": str(value)} for key, value in run.config.items()]
    tags = [{"key": key, "value": value} for key, value in run.tracked_tags.items()]
    tags.append({"key": RUN_NAME_TAG, "value": run_name(run)})
    return {"info": run_info_json(run),
            "data": {"metrics": metrics, "params": params, "tags": tags},
            "inputs": {"dataset_inputs": [dataset_input_json(dataset)
                                          for dataset in run.dataset_inputs.all()]}}


def dataset_input_json(dataset: DatasetInput) -> dict:
    reference = {"name": dataset.name, "digest": dataset.digest,
                 "source_type": dataset.source_type, "source": dataset.source}
    reference.update({field: getattr(dataset, field) for field in ("schema", "profile")
                      if getattr(dataset, field)})
    return {"tags": [{"key": key, "value": value} for key, value in dataset.tags.items()],
            "dataset": reference}
