"""The `rlab` command line against the real ASGI server on the test database: launching from
YAML, listing, cancelling, reading and following logs, and experiments exported and imported.

The commands run in this process (main(argv), output captured) except `logs -f`, which runs as
`python -m rlab` in a child process while the test writes the run's lines and ends it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
import yaml

from tests.stack import ROOT
from training.spec.config import RunConfig
from webapp.api.tokens import token_create
from webapp.experiments.models import Experiment
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs.ingestion import logs_append
from webapp.runs.models import Run, RunStatus
from webapp.runs.services import run_claim, run_fail, run_launch, run_mark_running, run_succeed
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SETTINGS = {"max_steps": 2, "prompts_per_step": 2, "group_size": 2, "learning_rate": 1.5e-5}


def write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def test_launch_creates_the_experiment_and_queues_a_run(rlab, server, project, tmp_path):
    file = write(tmp_path / "exp.yaml", {"name": "from-yaml", "description": "two steps",
                                         "config": SETTINGS})

    status, out, err = rlab("launch", file, "--project", project.pk)

    assert status == 0, err
    experiment = Experiment.objects.get(project=project, name="from-yaml")
    assert experiment.description == "two steps"
    assert experiment.config == RunConfig.from_dict(SETTINGS).to_dict()
    run = Run.objects.get(experiment=experiment)
    assert run.status == RunStatus.QUEUED
    assert out == f"Launched from-yaml #1 (run {run.pk}): {server}/runs/{run.pk}/\n"


def test_launching_the_same_file_again_reuses_its_experiment(rlab, project, tmp_path):
    file = write(tmp_path / "exp.yaml", {"name": "again", "config": SETTINGS})
    assert rlab("launch", file, "--project", project.pk)[0] == 0

    status, out, err = rlab("launch", file, "--project", project.pk)

    assert status == 0, err
    assert "Using experiment 'again'" in err and "same config" in err
    assert Experiment.objects.filter(project=project, name="again").count() == 1
    assert out.startswith("Launched again #2 ")


def test_a_name_taken_by_another_config_is_refused_until_renamed(rlab, project, tmp_path):
    assert rlab("launch", write(tmp_path / "a.yaml", {"name": "lr", "config": SETTINGS}),
                "--project", project.pk)[0] == 0
    changed = write(tmp_path / "b.yaml", {"name": "lr",
                                          "config": {**SETTINGS, "learning_rate": 3e-5}})

    status, out, err = rlab("launch", changed, "--project", project.pk)

    assert status == 1 and out == ""
    assert "learning_rate: 3e-05 here, 1.5e-05 there" in err and "--name" in err
    assert Run.objects.filter(experiment__project=project).count() == 1

    assert rlab("launch", changed, "--project", project.pk, "--name", "lr-3e-5")[0] == 0
    assert Experiment.objects.get(name="lr-3e-5").config["learning_rate"] == 3e-5


def test_bare_run_settings_need_a_name(rlab, project, tmp_path):
    file = write(tmp_path / "settings.yaml", SETTINGS)

    status, _, err = rlab("launch", file, "--project", project.pk)
    assert status == 2 and "--name" in err
    assert not Experiment.objects.filter(project=project).exists()

    assert rlab("launch", file, "--project", project.pk, "--name", "bare")[0] == 0
    assert Experiment.objects.get(name="bare").config["max_steps"] == 2


def test_an_evaluation_launches_on_the_model_given(rlab, project, tmp_path):
    file = write(tmp_path / "eval.yaml", {"name": "sums", "kind": "evaluation",
                                          "config": {"samples": 4, "pass_ks": "1, 4", "maj_ks": "4",
                                                     "max_prompts": 4}})

    status, _, err = rlab("launch", file, "--project", project.pk)
    assert status == 2 and "--model or --checkpoint" in err
    assert not Experiment.objects.filter(project=project).exists()

    status, _, err = rlab("launch", file, "--project", project.pk, "--model", "org/tiny-model")
    assert status == 0, err
    job = Run.objects.get(experiment__name="sums")
    assert job.config["model"] == "org/tiny-model" and job.config["samples"] == 4


def test_runs_lists_runs_and_cancel_cancels_one(rlab, experiment, user, project):
    run = run_launch(experiment=experiment, user=user)

    status, out, _ = rlab("runs", "--project", project.pk)
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "RUN", "STATUS", "PROGRESS", "CREATED"]
    assert row.split()[:5] == [str(run.pk), "grpo-small", "#1", "queued", "-"]

    status, out, _ = rlab("cancel", run.pk)
    assert status == 0 and out == f"Cancelled grpo-small #1 (run {run.pk}).\n"
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED

    status, _, err = rlab("cancel", run.pk)
    assert status == 1 and "already ended" in err
    assert rlab("runs", "--status", "queued")[1].split() == header.split()
    assert str(run.pk) in rlab("runs", "--status", "cancelled")[1]


def test_runs_takes_mlflows_filter_and_order_by(rlab, project, user):
    experiment = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    small, large = (tracked_run_create(experiment=experiment, user=user, name=name,
                                       params={"lr": lr}, tags={"method": "spo"})
                    for name, lr in (("small-lr", "1e-07"), ("large-lr", "0.001")))

    def listed(*options: str) -> list[str]:
        status, out, _ = rlab("runs", *options)
        assert status == 0
        return [line.split()[0] for line in out.splitlines()[1:]]

    assert listed("--filter", "params.lr > 1e-6 and tags.method = 'spo'") == [str(large.pk)]
    assert listed("--order-by", "params.lr DESC", "--order-by", "run_name") == [
        str(small.pk), str(large.pk)]  # as strings, as in MLflow: "1e-07" after "0.001"
    status, _, err = rlab("runs", "--filter", "params.lr > 1e-6 or tags.method = 'spo'")
    assert status == 1 and "has no OR" in err


def test_logs_prints_every_line_in_order(rlab, experiment, user):
    run = run_launch(experiment=experiment, user=user)
    now = datetime.now(UTC)
    logs_append(run_id=run.pk, lines=[(now, "info", "trainer", f"line {i}")
                                      for i in range(1500)])  # more than one page

    status, out, _ = rlab("logs", run.pk)

    assert status == 0
    lines = out.splitlines()
    assert [line.rsplit(" ", 2)[-2:] for line in lines] == [["line", str(i)]
                                                           for i in range(1500)]
    assert lines[0].split()[2:4] == ["INFO", "trainer"]


def test_logs_follow_returns_at_once_for_a_run_that_succeeded(rlab, experiment, user):
    run = run_launch(experiment=experiment, user=user)
    logs_append(run_id=run.pk, lines=[(datetime.now(UTC), "info", "trainer", "done")])
    run_claim(run_id=run.pk, worker="test")
    run_succeed(run_id=run.pk)

    status, out, err = rlab("logs", "-f", run.pk)

    assert status == 0
    assert out.endswith(" done\n") and "succeeded" in err


def test_logs_follow_prints_lines_as_they_come_until_the_run_fails(server, user, experiment):
    run = run_launch(experiment=experiment, user=user)
    run_claim(run_id=run.pk, worker="test")
    run_mark_running(run_id=run.pk, device="cpu", total_steps=2)
    logs_append(run_id=run.pk, lines=[(datetime.now(UTC), "info", "trainer", "step 1")])
    env = {"RLAB_URL": server, "RLAB_TOKEN": token_create(user=user, name="cli")[1],
           "PATH": "/usr/bin:/bin"}
    child = subprocess.Popen([sys.executable, "-m", "rlab", "logs", "-f", str(run.pk)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().endswith(" step 1\n")  # it is following
        logs_append(run_id=run.pk, lines=[(datetime.now(UTC), "error", "stderr", "CUDA OOM")])
        run_fail(run_id=run.pk, error_message="out of memory")
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()

    assert child.returncode == 1
    assert out.endswith(" ERROR   stderr  CUDA OOM\n")
    assert err == f"grpo-small #1 (run {run.pk}) failed: out of memory\n"


def test_export_then_import_round_trips_the_experiment(rlab, server, user, team, project,
                                                       tmp_path):
    config = RunConfig.from_dict({**SETTINGS, "beta": 0.0, "lr_schedule": "cosine",
                                  "extra_rewards": "think_format"}).to_dict()
    original = experiment_create(project=project, author=user, name="export me",
                                 description="line one\nline: two", config=config)
    other = project_create(team=team, name="Copy", description="", user=user)
    file = tmp_path / "exported.yaml"

    assert rlab("export", original.pk, "-o", file)[0] == 0
    status, out, err = rlab("import", file, "--project", other.pk)

    assert status == 0, err
    copy = Experiment.objects.get(project=other)
    assert (copy.name, copy.description, copy.kind) == ("export me", "line one\nline: two",
                                                        "training")
    assert copy.config == original.config
    assert not Run.objects.filter(experiment=copy).exists()
    assert out == f"Experiment {copy.pk}: {server}{copy.get_absolute_url()}\n"
    assert rlab("export", original.pk)[1] == file.read_text()


@pytest.mark.parametrize("text,named", [
    ("name: broken\nconfig: [unclosed\n", "is not valid YAML"),
    ("name: x\nconfig:\n  max_steps: 2\n  warp_factor: 9\n", "config.warp_factor: unknown setting"),
    ("name: x\nconfig:\n  max_steps: -1\n", "config.max_steps:"),
    ("name: x\nsettings:\n  max_steps: 2\n", "unknown key(s) settings"),
])
def test_a_file_that_cannot_be_used_exits_1_naming_the_problem(rlab, project, tmp_path, text,
                                                                named):
    status, out, err = rlab("import", write(tmp_path / "bad.yaml", text), "--project", project.pk)

    assert status == 1 and out == ""
    assert named in err
    assert not Experiment.objects.filter(project=project).exists()


def tracked_run(project, user, name: str = "lr 1e-6"):
    from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

    script = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    return tracked_run_create(experiment=script, user=user, name=name)


def test_runs_shows_the_name_a_script_gave_its_run(rlab, project, user):
    run = tracked_run(project, user)

    status, out, _ = rlab("runs")

    assert status == 0
    [row] = [line for line in out.splitlines() if line.startswith(str(run.pk))]
    assert "lr 1e-6 (sweep #1)" in row


def test_logs_of_a_tracked_run_says_it_has_no_worker_log(rlab, project, user):
    run = tracked_run(project, user)

    status, out, err = rlab("logs", run.pk)

    assert status == 0 and out == ""
    assert "is a tracked run: it has no worker log" in err and f"logs -f {run.pk}" in err


def test_logs_follow_on_a_tracked_run_prints_its_metrics_until_it_ends(server, project, user):
    from webapp.runs.ingestion import metrics_ingest
    from webapp.runs.tracking import tracked_run_finish

    run = tracked_run(project, user)
    now = datetime.now(UTC)
    metrics_ingest(run_id=run.pk, points=[("loss", 1, 0.75, now), ("reward/mean", 1, 0.25, now)])
    env = {"RLAB_URL": server, "RLAB_TOKEN": token_create(user=user, name="cli")[1],
           "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "client")}
    child = subprocess.Popen([sys.executable, "-m", "rlab", "logs", "-f", str(run.pk)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline() == "step 1  loss 0.75  reward/mean 0.25\n"
        metrics_ingest(run_id=run.pk, points=[("loss", 2, 0.5, now)])
        assert child.stdout.readline() == "step 2  loss 0.5\n"  # it follows as points come
        metrics_ingest(run_id=run.pk, points=[("loss", 3, 0.25, now)])
        tracked_run_finish(run_id=run.pk, status=RunStatus.SUCCEEDED)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()

    assert child.returncode == 0
    assert out == "step 3  loss 0.25\n"
    assert err.splitlines() == [
        f"lr 1e-6 (sweep #1) (run {run.pk}) is a tracked run: it has no worker log. Following "
        "its metrics instead; Ctrl-C stops.",
        f"lr 1e-6 (sweep #1) (run {run.pk}) succeeded."]
