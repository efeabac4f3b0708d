"""TRL's GRPOTrainer launched from a job template (running the recipe the example template
runs, webapp/jobs/recipes/trl_grpo.py) under `accelerate launch` with two CPU processes over
gloo, through a real worker with two CPU slots, logging to a real web server through the MLflow
protocol: one launch, watched while it trains, then cancelled, and its checkpoint evaluated by
the worker."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.stack import start_web, start_worker, wait_for_run
from tests.worker.script_runs import script_processes
from webapp.experiments.services import experiment_create
from webapp.jobs.models import ScriptOutput
from webapp.jobs.services import job_template_create, script_run_launch
from webapp.runs import services
from webapp.runs.models import Checkpoint, MetricPoint, Rollout, RunStatus

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RECIPE = Path(__file__).resolve().parents[2] / "webapp" / "jobs" / "recipes" / "trl_grpo.py"
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def test_trl_grpo_under_accelerate_logs_into_its_run_and_cancel_ends_every_rank(
        tmp_path, settings, project, user, tiny_model):
    # {output_dir} is rendered at launch: the web app and the worker see the same run folders.
    settings.RLAB_RUN_DIR = tmp_path / "runs"
    web, base_url = start_web(tmp_path)
    worker = start_worker(tmp_path, RLAB_WORKER_SCRIPTS="1", RLAB_SCRIPT_SCAN_SECONDS="1",
                          RLAB_URL=base_url, RLAB_WORKER_DEVICES="2")
    try:
        template = job_template_create(team=project.team, user=user, fields={
            "name": "TRL GRPO on CPUs",
            "command": f"{ACCELERATE} launch --multi_gpu --num_processes {{procs}} "
                       "--num_machines 1 --mixed_precision no --dynamo_backend no "
                       f"{RECIPE} --model_name_or_path {{model}} --use_cpu "
                       "--max_steps {max_steps} --per_device_train_batch_size 2 "
                       "--num_generations 2 --max_completion_length 6 --save_steps 1 "
                       "--num_prompts 8 --learning_rate {lr} --output_dir {output_dir}",
            "parameters": [
                {"name": "model", "type": "str", "required": True},
                {"name": "procs", "type": "int", "default": 2, "min": 1, "max": 2},
                {"name": "max_steps", "type": "int", "default": 1000, "min": 1, "max": 1000},
                {"name": "lr", "type": "float", "default": 1e-5, "min": 0, "max": 0.1},
            ],
            "environment": {"OMP_NUM_THREADS": "1"}, "devices": "{procs}",
            "rollouts_format": "trl", "rollouts_path": "completions", "checkpoints_path": ".",
        })
        run = script_run_launch(template=template, project=project, user=user,
                                values={"model": str(tiny_model)})

        def trained_a_while(r) -> bool:
            return (MetricPoint.objects.filter(run=r, key="rewards/correct/mean").exists()
                    and Rollout.objects.filter(run=r).exists()
                    and Checkpoint.objects.filter(run=r).exists())

        run = wait_for_run(run, lambda r: r.is_terminal or trained_a_while(r), 240, worker)
        assert run.status == RunStatus.RUNNING, run.error_message
        ranks = [pid for pid, cmd in script_processes(run.pk).items() if str(RECIPE) in cmd
                 and "accelerate" not in cmd.split()[1]]
        assert len(ranks) >= 2, script_processes(run.pk)
        rollout = Rollout.objects.filter(run=run).first()
        assert rollout.prompt.startswith("Compute ") and "correct" in rollout.rewards
        assert ScriptOutput.objects.filter(run=run, problem="").exists()

        assert services.run_cancel(run=run, user=user)
        cancelled_at = time.monotonic()
        while script_processes(run.pk) and time.monotonic() - cancelled_at < 1 + 3 + 5:
            time.sleep(0.2)
        assert script_processes(run.pk) == {}, "every rank ends within the grace period"
        run.refresh_from_db()
        assert run.status == RunStatus.CANCELLED

        checkpoint = Checkpoint.objects.filter(run=run).order_by("step").first()
        assert (Path(checkpoint.path) / "config.json").is_file()
        evaluation = experiment_create(
            project=project, author=user, name="sums", description="", kind="evaluation",
            config={"task": "arithmetic", "samples": 2, "pass_ks": "1", "maj_ks": "2",
                    "max_new_tokens": 4, "max_prompts": 2, "rollout_backend": "transformers"})
        job = services.evaluation_launch(experiment=evaluation, user=user, checkpoint=checkpoint)
        job = wait_for_run(job, lambda r: r.is_terminal, 180, worker)
        assert job.status == RunStatus.SUCCEEDED, job.error_message
        assert Rollout.objects.filter(run=job, step=checkpoint.step).count() == 2 * 2
    finally:
        worker.stop()
        web.stop()
