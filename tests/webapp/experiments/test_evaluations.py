"""Evaluation definitions and their jobs in the web app: the form, launching a job on a model or
a checkpoint, and the pages that show them."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from training.spec.evaluation_config import EvalConfig
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import ingestion, services
from webapp.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db

RECIPE = {"task": "arithmetic", "samples": 4, "pass_ks": "1, 4", "maj_ks": "4",
          "max_prompts": 20}


def _form_data(**overrides):
    config = EvalConfig().to_dict()
    del config["model"]
    return {"name": "held-out sums", "description": "", **config, **overrides}


@pytest.fixture
def evaluation(project, user):
    return experiment_create(project=project, author=user, name="held-out sums",
                             description="", config=RECIPE, kind=ExperimentKind.EVALUATION)


@pytest.fixture
def checkpoint(experiment, user, tmp_path):
    run = services.run_launch(experiment=experiment, user=user)
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    ingestion.checkpoints_ingest(run_id=run.pk, checkpoints=[
        ingestion.CheckpointSaved(step=3, path=str(folder), final=True)])
    return run.checkpoints.get()


def _finish(job: Run, metrics: dict[str, float], step: int = 0) -> None:
    services.run_claim(run_id=job.pk, worker="w")
    ingestion.metrics_ingest(run_id=job.pk, points=[
        ingestion.MetricSample(key=key, step=step, value=value, wall_time=timezone.now())
        for key, value in metrics.items()])
    services.run_succeed(run_id=job.pk)


def test_the_evaluation_form_has_the_recipe_but_not_the_model(signed_in, project):
    response = signed_in.get(reverse("experiments:create_evaluation", args=[project.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "New evaluation" in body and 'name="pass_ks"' in body and 'name="samples"' in body
    assert 'name="model"' not in body and 'name="algorithm"' not in body


def test_a_valid_evaluation_saves_its_recipe(signed_in, project, user):
    response = signed_in.post(reverse("experiments:create_evaluation", args=[project.pk]),
                              _form_data(samples="16", pass_ks="1, 8, 16", maj_ks="16"))
    evaluation = Experiment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == evaluation.get_absolute_url()
    assert evaluation.kind == ExperimentKind.EVALUATION and evaluation.author == user
    assert evaluation.config["samples"] == 16 and evaluation.config["pass_ks"] == "1, 8, 16"
    assert "model" not in evaluation.config


@pytest.mark.parametrize("field,value,message", [
    ("pass_ks", "1, 16", "16 is more than the 8 samples per prompt"),
    ("maj_ks", "two", "'two' is not a whole number"),
    ("samples", "0", "greater than or equal to 1"),
    ("split", "test", "Select a valid choice"),
])
def test_an_invalid_recipe_saves_nothing(signed_in, project, field, value, message):
    response = signed_in.post(reverse("experiments:create_evaluation", args=[project.pk]),
                              _form_data(**{field: value}))
    assert response.status_code == 422
    errors = response.context["form"].errors
    assert list(errors) == [field] and message in errors[field][0]
    assert not Experiment.objects.exists()


def test_editing_an_evaluation_keeps_it_an_evaluation(signed_in, evaluation):
    response = signed_in.post(reverse("experiments:edit", args=[evaluation.pk]),
                              _form_data(name="renamed", samples="8", maj_ks="8"))
    assert response.status_code == 302
    evaluation.refresh_from_db()
    assert (evaluation.name, evaluation.kind, evaluation.config["maj_ks"]) == (
        "renamed", ExperimentKind.EVALUATION, "8")


def test_evaluating_a_model_queues_a_job_with_the_recipe_and_the_model(signed_in, evaluation):
    response = signed_in.post(reverse("evaluations:launch", args=[evaluation.pk]),
                              {"model": " builtin:smollm2-135m-instruct "})
    job = Run.objects.get(experiment=evaluation)
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.status == RunStatus.QUEUED and job.evaluated_checkpoint is None
    assert job.config == EvalConfig.from_dict(
        {**RECIPE, "model": "builtin:smollm2-135m-instruct"}).to_dict()


def test_evaluating_a_checkpoint_records_it(signed_in, evaluation, checkpoint):
    response = signed_in.post(reverse("evaluations:launch", args=[evaluation.pk]),
                              {"checkpoint": str(checkpoint.pk)})
    job = Run.objects.get(experiment=evaluation)
    assert response.status_code == 302
    assert job.evaluated_checkpoint == checkpoint
    assert job.config["model"] == f"checkpoint:{checkpoint.pk}"


@pytest.mark.parametrize("data,message", [
    ({}, "Choose a checkpoint, or give a model to evaluate."),
    ({"model": "m", "checkpoint": "CHECKPOINT"}, "not both"),
    ({"checkpoint": "999999"}, "Select a valid choice"),
])
def test_a_bad_evaluate_request_says_why_and_queues_nothing(signed_in, evaluation, checkpoint,
                                                             data, message):
    data = {k: str(checkpoint.pk) if v == "CHECKPOINT" else v for k, v in data.items()}
    response = signed_in.post(reverse("evaluations:launch", args=[evaluation.pk]), data,
                              follow=True)
    assert message in response.content.decode()
    assert not Run.objects.filter(experiment=evaluation).exists()


def test_checkpoints_whose_folders_are_gone_cannot_be_evaluated(signed_in, evaluation,
                                                                checkpoint):
    page = signed_in.get(evaluation.get_absolute_url()).content.decode()
    assert f'<option value="{checkpoint.pk}">' in page
    checkpoint.path = "/nowhere/checkpoint-3"
    checkpoint.save()
    page = signed_in.get(evaluation.get_absolute_url()).content.decode()
    assert f'<option value="{checkpoint.pk}">' not in page
    with pytest.raises(ValidationError, match="is gone"):
        services.evaluation_launch(experiment=evaluation, user=evaluation.author,
                                   checkpoint=checkpoint)


def test_a_checkpoint_of_another_project_cannot_be_evaluated(evaluation, checkpoint, team, user):
    elsewhere = project_create(team=team, name="Other", description="", user=user)
    other = experiment_create(project=elsewhere, author=user, name="e", description="",
                              config=RECIPE, kind=ExperimentKind.EVALUATION)
    with pytest.raises(ValidationError, match="another project"):
        services.evaluation_launch(experiment=other, user=user, checkpoint=checkpoint)


def test_training_and_evaluation_launches_do_not_mix(evaluation, experiment, user):
    with pytest.raises(ValidationError, match="choose one"):
        services.run_launch(experiment=evaluation, user=user)
    with pytest.raises(ValidationError, match="is a training experiment"):
        services.evaluation_launch(experiment=experiment, user=user, model="m")


def test_a_job_on_a_dataset_records_the_datasets_file(evaluation, project, user, settings,
                                                      tmp_path):
    from webapp.datasets.services import dataset_create

    settings.RLAB_DATASET_DIR = tmp_path / "datasets"
    dataset = dataset_create(project=project, user=user, name="test set", kind="prompts",
                             filename="t.jsonl",
                             file=io.BytesIO(b'{"prompt": "1 + 1?", "answer": 2}\n'),
                             mapping={"prompt": "prompt", "answer": "answer"})
    evaluation.config = {**evaluation.config, "dataset": str(dataset.pk)}
    evaluation.save()
    job = services.evaluation_launch(experiment=evaluation, user=user, model="m")
    assert job.config["dataset"] == str(dataset.normalized_path)


def test_a_checkpoint_row_launches_an_evaluation_of_it(signed_in, evaluation, checkpoint):
    page = signed_in.get(checkpoint.run.get_absolute_url()).content.decode()
    assert reverse("evaluations:checkpoint_evaluate", args=[checkpoint.pk]) in page
    assert f'<option value="{evaluation.pk}">held-out sums</option>' in page
    response = signed_in.post(reverse("evaluations:checkpoint_evaluate", args=[checkpoint.pk]),
                              {"evaluation": str(evaluation.pk)})
    job = Run.objects.get(experiment=evaluation)
    assert response["Location"] == job.get_absolute_url()
    assert job.evaluated_checkpoint == checkpoint


def test_the_evaluation_page_lists_jobs_with_their_results(signed_in, evaluation, checkpoint):
    on_base = services.evaluation_launch(experiment=evaluation, user=evaluation.author,
                                         model="builtin:smollm2-135m-instruct")
    on_checkpoint = services.evaluation_launch(experiment=evaluation, user=evaluation.author,
                                               checkpoint=checkpoint)
    _finish(on_checkpoint, {"eval/pass@1": 0.625, "eval/pass@4": 0.9, "eval/maj@4": 0.7,
                            "eval/avg@4": 0.625, "eval/prompts": 20}, step=3)
    page = signed_in.get(evaluation.get_absolute_url()).content.decode()
    assert "pass@1 0.625 · pass@4 0.900 · maj@4 0.700 · avg@4 0.625" in page
    assert "builtin:smollm2-135m-instruct" in page and "queued" in page
    assert f"{checkpoint.run}</a> · step 3" in page
    assert on_base.pk != on_checkpoint.pk


def test_a_jobs_page_shows_its_results_and_samples_not_training_panels(signed_in, evaluation):
    job = services.evaluation_launch(experiment=evaluation, user=evaluation.author, model="m")
    _finish(job, {"eval/pass@1": 0.25, "eval/avg@4": 0.25, "eval/reward/mean": 0.25,
                  "eval/prompts": 20, "perf/tokens_per_s": 99.0})
    page = signed_in.get(job.get_absolute_url()).content.decode()
    assert "evaluation job" in page and "evaluating <span class=\"mono\">m</span>" in page
    assert 'id="evaluation-results"' in page and "<dt>pass@1</dt>" in page
    assert "<dt>reward/mean</dt>" in page and "<dt>prompts</dt>" not in page
    assert 'id="charts"' not in page and 'id="checkpoints"' not in page
    assert "Browse all samples" in page
    assert "Samples per prompt" not in page and ">pass_ks<" in page  # the recipe's settings


def test_the_project_page_lists_evaluations_apart(signed_in, project, experiment, evaluation):
    page = signed_in.get(project.get_absolute_url()).content.decode()
    experiments, evaluations = page.split('id="evaluations"')
    assert experiment.name in experiments and evaluation.name not in experiments
    assert evaluation.name in evaluations
    assert reverse("experiments:create_evaluation", args=[project.pk]) in page


def _job_with_samples(evaluation) -> Run:
    """Two prompts × 4 samples: "3+5" right 3 times (answers 8, 8, 8, 7), "0+1" never."""
    job = services.evaluation_launch(experiment=evaluation, user=evaluation.author, model="m")
    services.run_claim(run_id=job.pk, worker="w")
    verdicts = {"3+5": [("8", True), ("8", True), ("7", False), ("8", True)],
                "0+1": [(None, False), ("2", False), ("2", False), ("=1+1", False)]}
    items = [{"prompt": f"Compute {pid}.", "completion": f"it is {answer}", "group": group,
              "sample_index": i, "prompt_id": pid, "reward": float(ok),
              "rewards": {"correct": float(ok)}, "completion_tokens": 4 + i,
              "extra": {"answer": str(sum(map(int, pid.split("+")))), "correct": ok,
                        "extracted_answer": answer}}
             for group, (pid, samples) in enumerate(verdicts.items())
             for i, (answer, ok) in enumerate(samples)]
    ingestion.rollouts_ingest(run_id=job.pk, step=0, items=items)
    _finish(job, {"eval/pass@1": 0.375, "eval/avg@4": 0.375})
    return job


def test_a_jobs_results_download_prompt_by_prompt(signed_in, evaluation):
    import csv
    import io

    job = _job_with_samples(evaluation)
    page = signed_in.get(job.get_absolute_url()).content.decode()
    assert reverse("evaluations:export", args=[job.pk, "csv"]) in page
    response = signed_in.get(reverse("evaluations:export", args=[job.pk, "csv"]))
    assert response["Content-Disposition"] == (
        f'attachment; filename="evaluation-job-{job.pk}.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["prompt_id"] for r in rows] == ["3+5", "0+1"]
    first, second = rows
    assert (first["answer"], first["samples"], first["correct"], first["accuracy"]) == (
        "8", "4", "3", "0.75")
    assert (float(first["pass@1"]), float(first["pass@4"]), float(first["maj@4"])) == (
        0.75, 1.0, 1.0)
    assert first["majority_answer"] == "8"
    # a sample with no answer does not vote; "2" wins and is wrong
    assert (second["correct"], second["pass@4"], second["maj@4"]) == ("0", "0.0", "0.0")
    assert second["majority_answer"] == "2"

    data = signed_in.get(reverse("evaluations:export", args=[job.pk, "json"])).json()
    assert data["job"] == job.pk and data["metrics"] == {"pass@1": 0.375, "avg@4": 0.375}
    assert data["recipe"]["samples"] == 4 and data["model"] == "m"
    assert [s["answer"] for s in data["prompts"][1]["samples"]] == [None, "2", "2", "=1+1"]
    assert data["prompts"][0]["samples"][2] == {
        "completion": "it is 7", "answer": "7", "correct": False, "reward": 0.0,
        "completion_tokens": 6, "truncated": False}


def test_only_evaluation_jobs_export_and_only_to_their_team(client, signed_in, evaluation,
                                                           experiment, member_of,
                                                           django_user_model):
    job = _job_with_samples(evaluation)
    training = services.run_launch(experiment=experiment, user=evaluation.author)
    assert signed_in.get(reverse("evaluations:export", args=[training.pk, "csv"])
                         ).status_code == 404
    assert signed_in.get(reverse("evaluations:export", args=[job.pk, "xlsx"])
                         ).status_code == 404
    client.force_login(member_of("viewer"))
    assert client.get(reverse("evaluations:export", args=[job.pk, "json"])).status_code == 200
    client.force_login(django_user_model.objects.create_user("stranger", password="pw-x-12345"))
    assert client.get(reverse("evaluations:export", args=[job.pk, "json"])).status_code == 404
