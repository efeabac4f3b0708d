"""Hugging Face's Trainer with report_to=["mlflow"] (its MLflowCallback, which logs
asynchronously in batches) shows up in rlab as a tracked run with its training curves."""

from __future__ import annotations

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
