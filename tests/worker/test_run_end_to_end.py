"""A real Celery worker process runs tiny-model runs end to end on Postgres and Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Min
from django.utils import timezone

from tests.conftest import tiny_run_config
from tests.stack import launch_run, start_worker, training_processes, wait_for_run
from training.spec.config import ConfigError
from webapp.evaluations.selectors import project_evaluation_results
from webapp.experiments.models import Experiment
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import services
from webapp.runs.models import Checkpoint, LogLine, MetricPoint, Rollout, Run, RunStatus
from webapp.teams.services import team_create
from worker.tasks import run_execute

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def worker(tmp_path, tiny_model, run_dir):
    process = start_worker(tmp_path, RLAB_RUN_DIR=str(run_dir))
    yield process
    process.stop()


def test_a_launched_run_trains_to_success(worker, project, user, tiny_model):
    run = launch_run(project, user, "tiny", tiny_run_config(tiny_model, max_steps=3))
    run = wait_for_run(run, lambda r: r.is_terminal, 180, worker)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert (run.progress_step, run.progress_total) == (3, 3)
    assert run.device == "cpu" and run.worker and run.attempts == 1
    assert run.started_at <= run.finished_at
    steps = sorted(MetricPoint.objects.filter(run=run, key="reward/mean")
                   .values_list("step", flat=True))
    assert steps == [1, 2, 3]
    keys = set(MetricPoint.objects.filter(run=run).values_list("key", flat=True))
    assert {"reward/mean", "entropy/mean", "completion/length_mean", "loss/policy"} <= keys
    rollouts = Rollout.objects.filter(run=run)
    assert rollouts.count() == 3 * 4
    assert set(rollouts.values_list("step", flat=True)) == {1, 2, 3}
    assert all(r.completion_tokens is not None for r in rollouts)
    detailed = [r for r in rollouts if r.token_data]
    assert detailed, "the token view needs per-token arrays for some rollouts"
    assert len(detailed[0].token_data["logprob"]) == detailed[0].completion_tokens
    assert LogLine.objects.filter(run=run).exists()
    assert training_processes(run.pk) == []


def test_a_run_records_its_checkpoints_and_keeps_the_newest_on_disk(worker, project, user,
                                                                    tiny_model, run_dir):
    run = launch_run(project, user, "checkpoints", tiny_run_config(
        tiny_model, max_steps=3, checkpoint_every=2, keep_checkpoints=1))
    run = wait_for_run(run, lambda r: r.is_terminal, 180, worker)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    latest, earlier = Checkpoint.objects.filter(run=run).order_by("-step")
    assert (latest.step, latest.final) == (3, True)
    assert (earlier.step, earlier.final) == (2, False)
    folder = run_dir / f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}"
    assert Path(latest.path).parent == folder and Path(earlier.path).parent == folder
    assert (Path(latest.path) / "config.json").is_file()
    assert latest.size_on_disk() > 0
    assert earlier.size_on_disk() is None, "keep_checkpoints=1 keeps only the newest folder"


def test_a_model_removed_after_the_launch_fails_the_run_with_a_clear_message(
        worker, project, user, tiny_model):
    copy = shutil.copytree(tiny_model, tiny_model.parent / "short-lived")
    run = launch_run(project, user, "missing", tiny_run_config(copy))
    shutil.rmtree(copy)
    run = wait_for_run(run, lambda r: r.is_terminal, 60, worker)
    assert run.status == RunStatus.FAILED
    assert "model: no model is registered as 'local:short-lived'" in run.error_message
    assert str(copy) not in run.error_message


def test_the_training_process_loads_checkpoints_of_its_own_project_only(
        worker, project, user, tiny_model, run_dir, django_user_model):
    trained = launch_run(project, user, "trained", tiny_run_config(tiny_model, max_steps=1))
    trained = wait_for_run(trained, lambda r: r.is_terminal, 180, worker)
    checkpoint = trained.checkpoints.get()
    outsider = django_user_model.objects.create_user(username="mallory", password="x-9-y-8-z")
    theirs = project_create(team=team_create(name="Elsewhere", user=outsider), name="Theirs",
                            description="", user=outsider)
    for config in ({"model": f"checkpoint:{checkpoint.pk}"},
                   {"resume_from": f"checkpoint:{checkpoint.pk}"}):
        with pytest.raises(ConfigError, match=f"this project has no checkpoint {checkpoint.pk}"):
            experiment_create(project=theirs, author=outsider, name=str(config),
                              description="", config=tiny_run_config(tiny_model, **config))
    # A config smuggled past the checks (written straight into the database) fails at the
    # worker, which checks again, before any training process starts.
    experiment = Experiment.objects.create(
        project=theirs, author=outsider, name="smuggled",
        config=tiny_run_config(tiny_model, model=f"checkpoint:{checkpoint.pk}"))
    smuggled = Run.objects.create(experiment=experiment, number=1, config=experiment.config,
                                  launched_by=outsider, queue="cpu")
    run_execute.apply_async(args=[smuggled.pk], queue="cpu")
    smuggled = wait_for_run(smuggled, lambda r: r.is_terminal, 60, worker)
    assert smuggled.status == RunStatus.FAILED
    assert smuggled.error_message == f"model: this project has no checkpoint {checkpoint.pk}"
    assert not LogLine.objects.filter(run=smuggled).exists(), "no training process started"


def test_cancel_stops_the_training_process_within_10_seconds(worker, project, user,
                                                             tiny_model):
    run = launch_run(project, user, "long", tiny_run_config(tiny_model, max_steps=100_000))
    run = wait_for_run(run, lambda r: r.progress_step >= 1, 120, worker)
    assert training_processes(run.pk), "the training process should be running"

    cancelled_at = time.monotonic()
    assert services.run_cancel(run=run, user=user)
    while training_processes(run.pk) and time.monotonic() - cancelled_at < 15:
        time.sleep(0.1)
    stopped_after = time.monotonic() - cancelled_at

    assert stopped_after < 10, f"training still running {stopped_after:.1f} s after cancel"
    run = wait_for_run(run, lambda r: LogLine.objects.filter(run=r, source="worker").exists(), 15)
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None


def test_a_run_delivered_twice_trains_once(worker, project, user, tiny_model):
    run = launch_run(project, user, "twice", tiny_run_config(tiny_model, max_steps=2))
    run_execute.apply_async(args=[run.pk], queue="cpu")
    run = wait_for_run(run, lambda r: r.is_terminal, 180, worker)
    time.sleep(2)  # let the second delivery be handled too
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.attempts == 1
    assert "no queued run may start" in worker.output()


def test_a_killed_worker_leaves_no_training_process_and_its_run_is_failed(
        worker, project, user, tiny_model):
    run = launch_run(project, user, "orphan", tiny_run_config(tiny_model, max_steps=100_000))
    run = wait_for_run(run, lambda r: r.progress_step >= 1, 120, worker)

    worker.kill()
    deadline = time.monotonic() + 10
    while training_processes(run.pk) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert training_processes(run.pk) == [], "the training process outlived its worker"

    later = timezone.now() + timedelta(seconds=settings.RLAB_STALE_AFTER_SECONDS + 5)
    assert services.runs_fail_stale(now=later) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "stopped responding" in run.error_message


def _freeze_after_checkpoint(run: Run, folder: Path, timeout: float) -> None:
    """SIGSTOP the run's training process once it saved `folder` and the worker recorded that
    checkpoint: the process is then somewhere in the next step and gets no further."""
    deadline = time.monotonic() + timeout
    while not folder.is_dir():
        assert time.monotonic() < deadline, f"{folder} was not saved in {timeout} s"
        time.sleep(0.01)
    step = int(folder.name.removeprefix("checkpoint-"))
    pids = training_processes(run.pk)
    while True:
        time.sleep(0.1)  # the checkpoint event follows the folder's rename into place
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        recorded = time.monotonic() + 3
        while time.monotonic() < recorded:
            if Checkpoint.objects.filter(run=run, step=step).exists():
                return
            time.sleep(0.1)
        assert time.monotonic() < deadline, f"checkpoint {step} was saved but never recorded"
        for pid in pids:  # stopped before it reported the checkpoint: let it report
            os.kill(pid, signal.SIGCONT)


def test_a_cancelled_run_resumes_from_its_checkpoint_in_a_new_run(worker, project, user,
                                                                  tiny_model, run_dir):
    run = launch_run(project, user, "resume", tiny_run_config(tiny_model, max_steps=4,
                                                           checkpoint_every=1))
    folder = run_dir / f"run-{run.pk}-{run.created_at:%Y%m%d-%H%M%S}"
    _freeze_after_checkpoint(run, folder / "checkpoint-2", 120)
    assert services.run_cancel(run=run, user=user)
    run = wait_for_run(run, lambda r: LogLine.objects.filter(run=r, source="worker").exists(), 30,
                worker)
    assert training_processes(run.pk) == []
    assert list(run.checkpoints.values_list("step", flat=True)) == [2, 1]

    resumed = services.run_resume(run=run, user=user)
    resumed = wait_for_run(resumed, lambda r: r.is_terminal, 180, worker)

    assert resumed.status == RunStatus.SUCCEEDED, resumed.error_message
    assert (resumed.resumed_from.run, resumed.resumed_from.step) == (run, 2)
    assert resumed.config["resume_from"] == f"checkpoint:{resumed.resumed_from.pk}"
    assert resumed.resumed_from.path == str(folder / "checkpoint-2")
    assert (resumed.progress_step, resumed.progress_total) == (4, 4)
    assert MetricPoint.objects.filter(run=resumed).aggregate(first=Min("step"))["first"] == 3
    steps = sorted(MetricPoint.objects.filter(run=resumed, key="reward/mean")
                   .values_list("step", flat=True))
    assert steps == [3, 4]
    assert set(Rollout.objects.filter(run=resumed).values_list("step", flat=True)) == {3, 4}
    assert list(resumed.checkpoints.values_list("step", "final")) == [(4, True), (3, False)]
    assert LogLine.objects.filter(run=resumed, message__contains="after step 2").exists()


def _restart_postgres() -> None:
    version = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart",
                    "-m", "fast"], check=True, capture_output=True, timeout=60)


def test_a_database_restart_mid_run_loses_no_metrics(worker, project, user, tiny_model):
    run = launch_run(project, user, "db-restart", tiny_run_config(tiny_model, max_steps=12))
    run = wait_for_run(run, lambda r: r.progress_step >= 1, 120, worker)

    connection.close()
    _restart_postgres()
    connection.close()
    run = wait_for_run(run, lambda r: r.is_terminal, 180, worker)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    steps = sorted(MetricPoint.objects.filter(run=run, key="reward/mean")
                   .values_list("step", flat=True))
    assert steps == list(range(1, 13))
    assert Rollout.objects.filter(run=run).count() == 12 * 4


def test_evaluations_run_on_the_worker_during_training_and_on_checkpoints(
        worker, project, user, tiny_model):
    trained = launch_run(project, user, "evaluated", tiny_run_config(
        tiny_model, max_steps=2, eval_every=2, eval_prompts=3, eval_samples=2))
    trained = wait_for_run(trained, lambda r: r.is_terminal, 180, worker)
    assert trained.status == RunStatus.SUCCEEDED, trained.error_message
    periodic = MetricPoint.objects.filter(run=trained, key="eval/pass@1")
    assert sorted(periodic.values_list("step", flat=True)) == [0, 2]
    assert set(MetricPoint.objects.filter(run=trained, key="eval/prompts")
               .values_list("value", flat=True)) == {3.0}

    evaluation = experiment_create(
        project=project, author=user, name="held-out sums", description="", kind="evaluation",
        config={"task": "arithmetic", "samples": 2, "pass_ks": "1, 2", "maj_ks": "2",
                "max_new_tokens": 4, "max_prompts": 4, "rollout_backend": "transformers"})
    final = trained.checkpoints.get(final=True)
    on_checkpoint = services.evaluation_launch(experiment=evaluation, user=user,
                                               checkpoint=final)
    on_base = services.evaluation_launch(experiment=evaluation, user=user, model="local:tiny")
    for job in (on_checkpoint, on_base):
        job = wait_for_run(job, lambda r: r.is_terminal, 180, worker)
        assert job.status == RunStatus.SUCCEEDED, job.error_message
        assert (job.progress_step, job.progress_total) == (4, 4)
        assert training_processes(job.pk) == []
    step = {on_checkpoint.pk: 2, on_base.pk: 0}
    for job in (on_checkpoint, on_base):
        samples = Rollout.objects.filter(run=job)
        assert samples.count() == 4 * 2
        assert set(samples.values_list("step", flat=True)) == {step[job.pk]}
        assert sorted(set(samples.values_list("group", flat=True))) == [0, 1, 2, 3]
        correct = [r.extra["correct"] for r in samples]
        metrics = dict(MetricPoint.objects.filter(run=job, key__startswith="eval/")
                       .values_list("key", "value"))
        assert metrics["eval/avg@2"] == pytest.approx(sum(correct) / len(correct))
        assert {"eval/pass@1", "eval/pass@2", "eval/maj@2"} <= set(metrics)

    results = project_evaluation_results(project)
    labels = {(r.run.pk, r.step): (r.model, r.dataset, r.is_job) for r in results}
    assert labels == {
        (trained.pk, 0): (f"evaluated #{trained.number} · step 0", "arithmetic · held-out",
                          False),
        (trained.pk, 2): (f"evaluated #{trained.number} · step 2", "arithmetic · held-out",
                          False),
        (on_checkpoint.pk, 2): (f"evaluated #{trained.number} · step 2",
                                "arithmetic · held-out", True),
        (on_base.pk, 0): ("local:tiny", "arithmetic · held-out", True),
    }
