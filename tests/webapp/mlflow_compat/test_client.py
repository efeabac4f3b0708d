"""A script's MLflow logging, made by the real mlflow client over HTTP, becomes a tracked run of
the project its tracking URI names: its name, parameters, tags, metric points and end."""

from __future__ import annotations

import pytest

from webapp.experiments.models import Experiment
from webapp.runs.models import MetricPoint, Run, RunStatus


def points(run: Run) -> list[tuple[str, int, float]]:
    return list(MetricPoint.objects.filter(run=run).order_by("key", "step")
                .values_list("key", "step", "value"))


def test_a_script_logs_a_run_into_the_project(tracking, project, user):
    import mlflow

    mlflow.set_experiment("sft-baseline")
    active = mlflow.start_run(run_name="lr-1e-5")
    mlflow.log_params({"learning_rate": 1e-5, "model": "smollm2"})
    mlflow.log_param("seed", 7)
    for step in (1, 2, 3):
        mlflow.log_metrics({"loss": 1.0 / step, "reward/mean": step / 10}, step=step)
    mlflow.log_metric("eval/accuracy", 0.75, step=3)
    mlflow.set_tag("dataset", "gsm8k")
    mlflow.end_run()

    run = Run.objects.get(pk=int(active.info.run_id))
    assert run.experiment == Experiment.objects.get(project=project, name="sft-baseline")
    assert run.is_tracked
    assert run.name == "lr-1e-5"
    assert run.launched_by == user
    assert run.status == RunStatus.SUCCEEDED
    assert run.finished_at is not None
    assert run.config == {"learning_rate": "1e-05", "model": "smollm2", "seed": "7"}
    assert run.tracked_tags["dataset"] == "gsm8k"
    assert points(run) == [("eval/accuracy", 3, 0.75), ("loss", 1, 1.0), ("loss", 2, 0.5),
                           ("loss", 3, 1 / 3), ("reward/mean", 1, 0.1), ("reward/mean", 2, 0.2),
                           ("reward/mean", 3, 0.3)]


def test_the_client_reads_back_what_it_logged(tracking):
    import mlflow

    mlflow.set_experiment("sft-baseline")
    with mlflow.start_run(run_name="readback") as active:
        mlflow.log_param("seed", 7)
        mlflow.log_metric("loss", 2.0, step=1)
        mlflow.log_metric("loss", float("nan"), step=2)
        mlflow.set_tag("stage", "warmup")

    read = mlflow.get_run(active.info.run_id)
    assert read.info.run_name == "readback"
    assert read.info.status == "FINISHED"
    assert read.info.experiment_id == active.info.experiment_id
    assert read.data.params == {"seed": "7"}
    assert str(read.data.metrics["loss"]) == "nan"  # the last point, as in MLflow
    assert read.data.tags["stage"] == "warmup"


def test_a_second_script_with_the_same_experiment_name_adds_a_run_to_it(tracking, project):
    import mlflow

    for name in ("first", "second"):
        mlflow.set_experiment("sweep")
        with mlflow.start_run(run_name=name):
            mlflow.log_metric("loss", 1.0, step=1)

    experiment = Experiment.objects.get(project=project, name="sweep")
    assert sorted(experiment.runs.values_list("number", "name")) == [(1, "first"), (2, "second")]


def test_a_script_that_sets_no_experiment_logs_to_the_default_one(tracking, project):
    import mlflow

    with mlflow.start_run() as active:
        mlflow.log_metric("loss", 0.5)

    run = Run.objects.get(pk=int(active.info.run_id))
    assert run.experiment.name == "Default"
    assert run.experiment.project == project
    assert points(run) == [("loss", 0, 0.5)]


def test_a_script_that_raises_inside_its_run_fails_the_run(tracking):
    import mlflow

    with pytest.raises(RuntimeError), mlflow.start_run() as active:
        raise RuntimeError("out of memory")

    assert Run.objects.get(pk=int(active.info.run_id)).status == RunStatus.FAILED


def test_a_killed_run_is_cancelled(tracking):
    import mlflow

    with mlflow.start_run() as active:
        pass
    mlflow.end_run()
    run_id = active.info.run_id
    client = mlflow.MlflowClient()
    run = client.create_run(experiment_id=active.info.experiment_id)
    client.set_terminated(run.info.run_id, status="KILLED")

    assert Run.objects.get(pk=int(run.info.run_id)).status == RunStatus.CANCELLED
    assert Run.objects.get(pk=int(run_id)).status == RunStatus.SUCCEEDED


def test_a_batch_of_a_thousand_points_is_stored_whole(tracking):
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    with mlflow.start_run() as active:
        client.log_batch(active.info.run_id, metrics=[
            Metric(key=f"m{i % 4}", value=float(i), timestamp=1_700_000_000_000 + i, step=i // 4)
            for i in range(1000)])

    run = Run.objects.get(pk=int(active.info.run_id))
    assert MetricPoint.objects.filter(run=run).count() == 1000
    assert MetricPoint.objects.get(run=run, key="m3", step=249).value == 999.0


def test_a_parameter_keeps_its_first_value(tracking):
    import mlflow
    from mlflow.exceptions import MlflowException

    with mlflow.start_run() as active:
        mlflow.log_param("lr", "0.1")
        mlflow.log_param("lr", "0.1")  # the same value again is fine, as in MLflow
        with pytest.raises(MlflowException) as raised:
            mlflow.log_param("lr", "0.2")

    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "lr" in raised.value.message
    assert Run.objects.get(pk=int(active.info.run_id)).config == {"lr": "0.1"}


def test_an_ended_run_takes_no_more_points(tracking):
    import mlflow
    from mlflow.exceptions import MlflowException

    with mlflow.start_run() as active:
        mlflow.log_metric("loss", 1.0, step=1)
    with pytest.raises(MlflowException) as raised:
        mlflow.MlflowClient().log_metric(active.info.run_id, "loss", 0.5, step=2)

    assert raised.value.error_code == "RESOURCE_CONFLICT"
    assert "Start a new run" in raised.value.message
    assert MetricPoint.objects.filter(run_id=int(active.info.run_id)).count() == 1


def test_a_training_experiments_name_is_refused_with_a_reason(tracking, experiment):
    import mlflow
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as raised:
        mlflow.set_experiment(experiment.name)

    assert "log to another experiment name" in raised.value.message.lower()
    assert not experiment.runs.exists()


def test_artifacts_go_to_the_server_never_to_the_scripts_folder(tracking, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "notes.txt")

    assert list(tmp_path.iterdir()) == []
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "hello"


def test_a_script_attaches_to_a_run_that_is_still_running(tracking):
    import mlflow

    opened = mlflow.MlflowClient().create_run(experiment_id="0", run_name="shared")
    with mlflow.start_run(run_id=opened.info.run_id):
        mlflow.log_metric("loss", 1.0, step=1)

    run = Run.objects.get(pk=int(opened.info.run_id))
    assert run.status == RunStatus.SUCCEEDED
    assert points(run) == [("loss", 1, 1.0)]


def test_a_run_is_renamed_by_update_run_and_by_its_run_name_tag(tracking):
    import mlflow

    with mlflow.start_run(run_name="first") as active:
        client = mlflow.MlflowClient()
        client.update_run(active.info.run_id, name="second")
        assert Run.objects.get(pk=int(active.info.run_id)).name == "second"
        assert client.get_run(active.info.run_id).info.run_name == "second"
        mlflow.set_tag("mlflow.runName", "third")

    run = Run.objects.get(pk=int(active.info.run_id))
    assert (run.name, run.status) == ("third", RunStatus.SUCCEEDED)
    assert "mlflow.runName" not in run.tracked_tags
