"""MLflow 3's logged models through the real mlflow client: mlflow.pyfunc.log_model creates,
uploads and finalises one, and the client finds and loads it back; a Hugging Face model folder
logged as artifacts becomes a checkpoint of the run that rlab's evaluations load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.spec.evaluation_config import EvalConfig
from webapp.artifacts.models import Artifact, LoggedModel, LoggedModelStatus
from webapp.runs import model_sources
from webapp.runs.models import Checkpoint, Run


def doubler():
    """A pyfunc model whose prediction is twice its input."""
    import mlflow

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [2 * x for x in model_input]

    return Model()


def test_log_model_makes_a_ready_logged_model_of_the_run_that_loads_back(tracking):
    import mlflow

    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="doubler", python_model=doubler(),
                                       params={"factor": "2"})

    model = LoggedModel.objects.get(pk=info.model_id)
    assert model.status == LoggedModelStatus.READY
    assert model.source_run_id == int(run.info.run_id)
    assert model.name == "doubler"
    assert model.params["factor"] == "2"
    assert {"MLmodel", "python_model.pkl"} <= set(
        Artifact.objects.filter(logged_model=model).values_list("path", flat=True))
    client = mlflow.MlflowClient()
    fetched = client.get_logged_model(info.model_id)
    assert fetched.status == mlflow.entities.LoggedModelStatus.READY
    assert fetched.source_run_id == run.info.run_id
    assert [m.model_id for m in mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string="name = 'doubler'",
        output_format="list")] == [info.model_id]
    assert mlflow.pyfunc.load_model(f"models:/{info.model_id}").predict([1, 2]) == [2, 4]
    # runs:/<run>/<model name> finds the run's model by name, as MLflow 3 resolves it
    assert mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/doubler").predict([3]) == [6]


def test_logged_models_are_searched_with_mlflows_filter_and_paged(tracking):
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = mlflow.set_experiment("models").experiment_id
    made = [client.create_logged_model(experiment_id, name=f"m{i}", params={"lr": str(i)},
                                       tags={"kind": "odd" if i % 2 else "even"})
            for i in range(5)]
    client.finalize_logged_model(made[1].model_id, mlflow.entities.LoggedModelStatus.READY)

    def names(filter_string: str, **kwargs) -> list[str]:
        return sorted(m.name for m in client.search_logged_models(
            [experiment_id], filter_string=filter_string, **kwargs))

    assert names("tags.kind = 'odd'") == ["m1", "m3"]
    assert names("params.lr = '4' AND name LIKE 'm%'") == ["m4"]
    assert names("status = 'LOGGED_MODEL_READY'") == ["m1"]
    assert names("name != 'm0' and tags.`kind` != 'odd'") == ["m2", "m4"]
    page = client.search_logged_models([experiment_id], max_results=2,
                                       order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in page] == ["m0", "m1"]
    rest = client.search_logged_models([experiment_id], max_results=10, page_token=page.token,
                                       order_by=[{"field_name": "name", "ascending": True}])
    assert [m.name for m in rest] == ["m2", "m3", "m4"] and not rest.token
    with pytest.raises(mlflow.exceptions.MlflowException) as raised:
        names("metrics.accuracy > 0.5")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    client.set_logged_model_tags(made[0].model_id, {"kind": "best"})
    client.delete_logged_model_tag(made[2].model_id, "kind")
    assert client.get_logged_model(made[0].model_id).tags["kind"] == "best"
    assert "kind" not in client.get_logged_model(made[2].model_id).tags


def test_a_deleted_logged_model_is_gone_with_its_files(tracking):
    import mlflow

    client = mlflow.MlflowClient()
    experiment_id = mlflow.set_experiment("models").experiment_id
    model = client.create_logged_model(experiment_id, name="gone")
    client.log_model_artifacts(model.model_id, str(Path(__file__).parent))
    folder = Path(mlflow_store()) / "models" / model.model_id
    assert folder.is_dir()

    client.delete_logged_model(model.model_id)

    assert not LoggedModel.objects.filter(pk=model.model_id).exists()
    assert not folder.exists()


def mlflow_store() -> str:
    from django.conf import settings

    return str(settings.RLAB_ARTIFACT_DIR)


def assert_evaluable(checkpoint: Checkpoint, project) -> None:
    """rlab's evaluation takes checkpoint:<id>, and the folder loads as a model."""
    from transformers import AutoModelForCausalLM

    config = EvalConfig(model=f"checkpoint:{checkpoint.pk}").to_dict()
    resolved = model_sources.config_for_worker(project_id=project.pk, config=config,
                                               config_class=EvalConfig)
    assert resolved["model"] == checkpoint.path
    model = AutoModelForCausalLM.from_pretrained(checkpoint.path)
    assert model.config.num_hidden_layers == 2


def test_a_model_folder_logged_as_artifacts_becomes_an_evaluable_checkpoint(
        tracking, project, tiny_model, tmp_path):
    import mlflow

    folder = tmp_path / "checkpoint-7"
    shutil.copytree(tiny_model, folder)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "checkpoint-7"), artifact_path="ckpts/checkpoint-7")
        mlflow.log_text("not a model", "notes/config.json")

    checkpoint = Checkpoint.objects.get(run_id=int(run.info.run_id))
    assert checkpoint.step == 7
    assert Path(checkpoint.path) == (Path(mlflow_store()) / "runs" / run.info.run_id
                                     / "ckpts" / "checkpoint-7")
    assert_evaluable(checkpoint, project)


def test_a_sharded_model_folder_is_a_checkpoint_only_once_every_shard_is_there(
        tracking, project, tiny_model, tmp_path):
    import mlflow
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(folder,
                                                                     max_shard_size="200KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(folder / "config.json"), "final")
        mlflow.log_artifact(str(folder / "model.safetensors.index.json"), "final")
        for shard in shards[:-1]:
            mlflow.log_artifact(str(shard), "final")
        assert not Checkpoint.objects.filter(run_id=int(run.info.run_id)).exists()
        mlflow.log_artifact(str(shards[-1]), "final")
        mlflow.log_metric("loss", 0.5, step=12)

    checkpoint = Checkpoint.objects.get(run_id=int(run.info.run_id))
    assert checkpoint.step == 0  # no checkpoint-<N> in its path, no step logged before it
    assert_evaluable(checkpoint, project)


def test_a_pyfunc_logged_checkpoint_is_a_checkpoint_of_its_run(
        tracking, project, tiny_model, tmp_path):
    """What transformers' MLflowCallback does on each save with HF_MLFLOW_LOG_ARTIFACTS."""
    import mlflow

    shutil.copytree(tiny_model, tmp_path / "checkpoint-3")
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model("checkpoint-3", artifacts={"model_path": str(
            tmp_path / "checkpoint-3")}, python_model=mlflow.pyfunc.PythonModel())

    run = Run.objects.get(pk=int(run.info.run_id))
    checkpoint = run.checkpoints.get()
    model = run.logged_models.get()
    assert checkpoint.step == 3
    assert Path(checkpoint.path) == (Path(mlflow_store()) / "models" / model.pk / "artifacts"
                                     / "checkpoint-3")
    assert_evaluable(checkpoint, project)
