"""Where a script can tell rlab from an MLflow server, it cannot: a value logged again at a step
reads back as the latest, an ended run runs again when a script resumes it, a dataset logged as
an input reads back, and a script that dies of an exception leaves a failed run, not a finished
one. The real mlflow client, over HTTP, in the test process or in a script of its own."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.stack import ROOT
from webapp.runs.models import DatasetInput, MetricPoint, Run, RunStatus
from webapp.runs.tracking import tracked_runs_crash_stale


def test_a_metric_logged_again_at_a_step_reads_back_as_the_latest(tracking):
    import mlflow

    client = mlflow.MlflowClient()
    with mlflow.start_run() as active:
        run_id = active.info.run_id
        client.log_metric(run_id, "loss", 0.5, timestamp=2000, step=1)
        client.log_metric(run_id, "loss", 0.7, timestamp=1000, step=1)  # older: ignored
        client.log_metric(run_id, "reward", 0.1, timestamp=1000, step=1)
        client.log_metric(run_id, "reward", 0.3, timestamp=1000, step=1)  # a tie: the greater
        client.log_metric(run_id, "reward", 0.2, timestamp=1000, step=1)

    latest = {m.key: (m.value, m.timestamp) for m in client.get_run(run_id).data._metric_objs}
    assert latest == {"loss": (0.5, 2000), "reward": (0.3, 1000)}
    assert MetricPoint.objects.get(run_id=int(run_id), key="loss").value == 0.5


def test_an_ended_run_runs_again_when_a_script_resumes_it(tracking):
    import mlflow

    with mlflow.start_run() as active:
        mlflow.log_metric("loss", 1.0, step=1)
    run = Run.objects.get(pk=int(active.info.run_id))
    assert run.status == RunStatus.SUCCEEDED

    with mlflow.start_run(run_id=active.info.run_id):
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING and run.finished_at is None
        mlflow.log_metric("loss", 0.5, step=2)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert list(MetricPoint.objects.filter(run=run).order_by("step").values_list(
        "step", "value")) == [(1, 1.0), (2, 0.5)]


def test_a_crashed_run_runs_again_when_its_script_writes_or_resumes(tracking, settings):
    import mlflow
    from django.utils import timezone

    settings.RLAB_TRACKED_STALE_AFTER_SECONDS = 60
    later = timezone.now() + timezone.timedelta(seconds=61)
    active = mlflow.start_run()
    run = Run.objects.get(pk=int(active.info.run_id))
    assert tracked_runs_crash_stale(now=later) == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.CRASHED and "Nothing was heard" in run.error_message
    assert mlflow.MlflowClient().get_run(active.info.run_id).info.status == "FAILED"

    mlflow.log_metric("loss", 1.0, step=1)  # the script was only cut off: it is alive
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.error_message == ""
    mlflow.end_run()

    assert tracked_runs_crash_stale(now=later) == []
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_a_dataset_logged_as_input_is_kept_as_a_reference(tracking, signed_in):
    import mlflow
    import pandas

    frame = pandas.DataFrame({"prompt": ["1 + 1", "2 + 2"], "answer": ["2", "4"]})
    dataset = mlflow.data.from_pandas(frame, source="s3://bucket/gsm8k.parquet", name="gsm8k")
    with mlflow.start_run() as active:
        mlflow.log_input(dataset, context="training")
        mlflow.log_input(dataset, context="training")  # again: kept once

    run = Run.objects.get(pk=int(active.info.run_id))
    [stored] = DatasetInput.objects.filter(run=run)
    assert (stored.name, stored.digest, stored.source_type) == ("gsm8k", dataset.digest, "s3")
    assert "s3://bucket/gsm8k.parquet" in stored.source
    assert "prompt" in stored.schema
    assert stored.context == "training"

    [read] = mlflow.MlflowClient().get_run(active.info.run_id).inputs.dataset_inputs
    assert (read.dataset.name, read.dataset.digest) == ("gsm8k", dataset.digest)
    assert read.dataset.schema == stored.schema
    assert {tag.key: tag.value for tag in read.tags} == {"mlflow.data.context": "training"}

    page = signed_in.get(run.get_absolute_url()).content.decode()
    assert 'id="dataset-inputs"' in page and "gsm8k" in page and "training" in page


def test_an_input_over_mlflows_limits_is_refused_whole(tracking):
    import mlflow
    from mlflow.entities import Dataset, DatasetInput as MlflowDatasetInput
    from mlflow.exceptions import MlflowException

    too_long = Dataset(name="x" * 501, digest="d", source_type="local", source="{}")
    with mlflow.start_run() as active:
        with pytest.raises(MlflowException, match="name"):
            mlflow.MlflowClient().log_inputs(active.info.run_id,
                                             [MlflowDatasetInput(dataset=too_long)])
    assert not DatasetInput.objects.exists()


SCRIPT = """
import mlflow
mlflow.set_experiment("dies")
mlflow.start_run(run_name={name!r})
mlflow.log_metric("loss", 1.0, step=1)
{end}
"""


def plugin_path(tmp_path: Path) -> str:
    """Where the script finds rlab-client's entry point: the venv's, once rlab-client is
    installed from this tree; otherwise the same entry point, declared for this tree's client
    in a folder of its own (importlib.metadata reads a .dist-info folder on sys.path)."""
    group = "mlflow.request_header_provider"
    if any(e.value.startswith("rlab.") for e in importlib.metadata.entry_points(group=group)):
        return ""
    info = tmp_path / "rlab_client_plugin-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rlab-client-plugin\n"
                                   "Version: 0\n")
    (info / "entry_points.txt").write_text(
        f"[{group}]\nrlab = rlab.mlflow_plugin:ScriptExceptionHeader\n")
    return str(tmp_path)


@pytest.mark.parametrize(("end", "status", "error"), [
    ("raise RuntimeError('the reward model is down')", RunStatus.FAILED,
     "uncaught RuntimeError"),
    ("raise KeyboardInterrupt", RunStatus.CANCELLED, "uncaught KeyboardInterrupt"),
    ("", RunStatus.SUCCEEDED, ""),
    ("import sys; sys.exit(0)", RunStatus.SUCCEEDED, ""),
], ids=["an exception", "ctrl-c", "a clean end", "sys.exit"])
def test_a_script_that_dies_leaves_a_failed_run_not_a_finished_one(
        tracking, tmp_path, end, status, error):
    uri = tracking()
    name = f"ends with {end or 'nothing'}"
    paths = [str(ROOT), str(ROOT / "client"), plugin_path(tmp_path)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    script = textwrap.dedent(SCRIPT.format(name=name, end=end))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode == 0) == (status == RunStatus.SUCCEEDED), done.stderr

    run = Run.objects.get(name=name)
    assert run.status == status, done.stderr
    assert error in run.error_message
    assert MetricPoint.objects.get(run=run).value == 1.0


TRAINER_SCRIPT = """
import sys
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

class Tokens(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        ids = torch.arange(16) % 50
        return {"input_ids": ids, "labels": ids}

class DiesAtStep3(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("CUDA out of memory (simulated)")

model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
args = TrainingArguments(output_dir=sys.argv[2], run_name="dies", max_steps=6,
                         per_device_train_batch_size=2, logging_steps=1, save_strategy="no",
                         report_to=["mlflow"], use_cpu=True, disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[DiesAtStep3()]).train()
"""


def test_a_trainer_that_dies_leaves_a_failed_run(tracking, tmp_path, tiny_model, project):
    paths = [str(ROOT), str(ROOT / "client"), plugin_path(tmp_path)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking(), "MLFLOW_EXPERIMENT_NAME": "dies",
           "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    done = subprocess.run([sys.executable, "-c", TRAINER_SCRIPT, str(tiny_model),
                           str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert "CUDA out of memory (simulated)" in done.stderr

    run = Run.objects.get(experiment__project=project, name="dies")
    assert run.status == RunStatus.FAILED, done.stderr[-3000:]
    assert "uncaught RuntimeError" in run.error_message
    assert MetricPoint.objects.filter(run=run, key="loss").exists()
