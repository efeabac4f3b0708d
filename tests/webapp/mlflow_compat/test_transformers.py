"""Hugging Face's Trainer with report_to=["mlflow"] (its MLflowCallback, which logs
asynchronously in batches) shows up in rlab as a tracked run with its training curves."""

from __future__ import annotations

from pathlib import Path

import torch

from webapp.experiments.models import Experiment
from webapp.runs.models import MetricPoint, RunStatus


class TokenDataset(torch.utils.data.Dataset):
    """Fixed random token sequences; a causal LM learns them as its own labels."""

    def __init__(self, vocab_size: int, rows: int = 8, length: int = 16):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab_size, (rows, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def test_a_trainer_reporting_to_mlflow_logs_its_curves_into_a_tracked_run(
        tracking, project, tiny_model, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf-trainer")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), run_name="tiny-sft", max_steps=4,
                             per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
                             save_strategy="no", report_to=["mlflow"], use_cpu=True,
                             disable_tqdm=True)
    Trainer(model=model, args=args,
            train_dataset=TokenDataset(model.config.vocab_size)).train()

    run = Experiment.objects.get(project=project, name="hf-trainer").runs.get()
    assert run.name == "tiny-sft"
    assert run.status == RunStatus.SUCCEEDED
    assert run.config["learning_rate"] == "0.001"
    assert run.config["num_hidden_layers"] == "2"  # the model's config is logged too
    steps = {key: sorted(MetricPoint.objects.filter(run=run, key=key)
                         .values_list("step", flat=True))
             for key in ("loss", "learning_rate")}
    assert steps == {"loss": [1, 2, 3, 4], "learning_rate": [1, 2, 3, 4]}
    assert MetricPoint.objects.filter(run=run, key="train_loss").exists()


def test_a_trainer_logging_its_checkpoints_to_mlflow_makes_them_evaluable(
        tracking, project, tiny_model, tmp_path, monkeypatch):
    """HF_MLFLOW_LOG_ARTIFACTS=1: MLflowCallback logs each saved checkpoint as a logged model
    (mlflow.pyfunc.log_model) whose files are the checkpoint folder."""
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from training.spec.evaluation_config import EvalConfig
    from webapp.artifacts.models import Artifact, LoggedModelStatus
    from webapp.runs import model_sources

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf-checkpoints")
    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "1")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), run_name="tiny-ckpt", max_steps=4,
                             per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
                             save_strategy="steps", save_steps=2, report_to=["mlflow"],
                             use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args,
            train_dataset=TokenDataset(model.config.vocab_size)).train()

    run = Experiment.objects.get(project=project, name="hf-checkpoints").runs.get()
    assert run.status == RunStatus.SUCCEEDED
    models = {m.name: m for m in run.logged_models.all()}
    assert set(models) == {"checkpoint-2", "checkpoint-4"}
    assert all(m.status == LoggedModelStatus.READY for m in models.values())
    saved = tmp_path / "out" / "checkpoint-4" / "model.safetensors"
    stored = Artifact.objects.get(logged_model=models["checkpoint-4"],
                                  path="artifacts/checkpoint-4/model.safetensors")
    assert stored.size == saved.stat().st_size
    checkpoints = {c.step: c for c in run.checkpoints.all()}
    assert set(checkpoints) == {2, 4}
    assert (Path(checkpoints[4].path) / "model.safetensors").read_bytes() == saved.read_bytes()
    config = EvalConfig(model=f"checkpoint:{checkpoints[4].pk}").to_dict()
    assert model_sources.config_for_worker(project_id=project.pk, config=config,
                                           config_class=EvalConfig)["model"] == checkpoints[4].path
    AutoModelForCausalLM.from_pretrained(checkpoints[4].path)
