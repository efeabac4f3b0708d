"""Experiments reference a dataset by id; a launch records the dataset's normalised file."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from training.spec.config import RunConfig
from training.spec.preference_dataset import load_preference_dataset
from training.spec.prompt_dataset import load_prompt_dataset
from webapp.datasets.services import dataset_create
from webapp.experiments.models import Experiment
from webapp.projects.services import project_create
from webapp.runs.services import run_launch
from webapp.teams.services import team_create

pytestmark = pytest.mark.django_db

PROMPTS = b'{"prompt": "Compute 1 + 2.", "answer": 3}\n'
PREFERENCES = b'{"prompt": "Hi?", "chosen": "Hello!", "rejected": "No."}\n'


def _dataset(project, user, name="sums", kind="prompts", data=PROMPTS):
    roles = ("prompt", "answer") if kind == "prompts" else ("prompt", "chosen", "rejected")
    return dataset_create(project=project, user=user, name=name, kind=kind,
                          filename=f"{name}.jsonl", file=io.BytesIO(data),
                          mapping={role: role for role in roles})


@pytest.fixture
def foreign_dataset(other_user):
    team = team_create(name="Elsewhere", user=other_user)
    project = project_create(team=team, name="Other", description="", user=other_user)
    return _dataset(project, other_user, name="theirs")


def _form_data(**overrides):
    return {"name": "on-my-data", "description": "", **RunConfig().to_dict(), **overrides}


def test_the_form_offers_the_projects_datasets_by_kind(signed_in, project, user,
                                                      foreign_dataset):
    sums = _dataset(project, user)
    prefs = _dataset(project, user, name="prefs", kind="preferences", data=PREFERENCES)
    response = signed_in.get(reverse("experiments:create", args=[project.pk]))
    choices = response.context["form"].fields["dataset"].choices
    assert choices == [("", "None: train on the built-in task"),
                       ("Prompt datasets", [(str(sums.pk), "sums (1 rows)")]),
                       ("Preference datasets (DPO)", [(str(prefs.pk), "prefs (1 rows)")])]


@pytest.mark.parametrize("algorithm, kind, field, message", [
    ("dpo", "prompts", "dataset", "choose a preference dataset"),
    ("grpo", "preferences", "dataset", "This is a preference dataset, for DPO"),
])
def test_the_dataset_must_suit_the_algorithm(signed_in, project, user, algorithm, kind, field,
                                             message):
    dataset = _dataset(project, user, kind=kind,
                       data=PROMPTS if kind == "prompts" else PREFERENCES)
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(algorithm=algorithm, dataset=str(dataset.pk)))
    assert response.status_code == 422
    assert message in response.context["form"].errors[field][0]
    assert not Experiment.objects.exists()


def test_a_curriculum_needs_a_difficulty_column(signed_in, project, user):
    sums = _dataset(project, user)
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(prompt_sampler="curriculum", dataset=str(sums.pk)))
    assert response.status_code == 422
    assert "no difficulty column" in response.context["form"].errors["prompt_sampler"][0]


def test_dump_needs_the_distribution_column_in_the_dataset(signed_in, project, user):
    sums = _dataset(project, user)
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(prompt_sampler="dump", dataset=str(sums.pk)))
    assert response.status_code == 422
    assert response.context["form"].errors["dump_column"] == [
        "This dataset has no 'source' column: its columns are prompt, answer. Upload it with a "
        "column mapped as the source, and name 'source' here."]
    sourced = dataset_create(
        project=project, user=user, name="sourced", kind="prompts", filename="s.jsonl",
        file=io.BytesIO(b'{"prompt": "Compute 1 + 2.", "answer": 3, "from": "a"}\n'),
        mapping={"prompt": "prompt", "answer": "answer", "source": "from"})
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(prompt_sampler="dump", dataset=str(sourced.pk)))
    assert response.status_code == 302
    assert Experiment.objects.get().config["prompt_sampler"] == "dump"


def test_a_dpo_launch_records_the_preference_file(project, user, experiment):
    prefs = _dataset(project, user, name="prefs", kind="preferences", data=PREFERENCES)
    experiment.config = {**experiment.config, "algorithm": "dpo", "dataset": str(prefs.pk)}
    experiment.save()
    run = run_launch(experiment=experiment, user=user)
    assert run.config["dataset"] == str(prefs.normalized_path)
    [pair] = load_preference_dataset(run.config["dataset"])
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hi?", "Hello!", "No.")


def test_an_experiment_stores_the_dataset_id(signed_in, project, user):
    sums = _dataset(project, user)
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(dataset=str(sums.pk)))
    assert response.status_code == 302
    assert Experiment.objects.get().config["dataset"] == str(sums.pk)


def test_no_dataset_means_the_built_in_task(signed_in, project):
    signed_in.post(reverse("experiments:create", args=[project.pk]), _form_data(dataset=""))
    assert Experiment.objects.get().config["dataset"] == ""


def test_another_projects_dataset_is_refused(signed_in, project, foreign_dataset):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(dataset=str(foreign_dataset.pk)))
    assert response.status_code == 422
    assert "Select a valid choice" in response.context["form"].errors["dataset"][0]
    assert not Experiment.objects.exists()


def test_a_launch_records_the_datasets_normalised_file(project, user, experiment):
    sums = _dataset(project, user)
    experiment.config = {**experiment.config, "dataset": str(sums.pk)}
    experiment.save()
    run = run_launch(experiment=experiment, user=user)
    assert run.config["dataset"] == str(sums.normalized_path)
    assert sums.normalized_sha256 in run.config["dataset"]
    RunConfig.from_dict(run.config)  # the snapshot is a config the trainer accepts
    [example] = load_prompt_dataset(run.config["dataset"]).examples
    assert (example.prompt, example.columns) == ("Compute 1 + 2.", {"answer": "3"})


@pytest.mark.parametrize("reference", ["/etc/passwd", "../sums.jsonl", "999999", "1e3"])
def test_a_launch_never_passes_anything_but_a_dataset_of_the_project(project, user, experiment,
                                                                    reference):
    experiment.config = {**experiment.config, "dataset": reference}
    experiment.save()
    with pytest.raises(ValidationError, match="is not a prompt dataset of this project"):
        run_launch(experiment=experiment, user=user)


def test_a_launch_refuses_another_projects_dataset(user, experiment, foreign_dataset):
    experiment.config = {**experiment.config, "dataset": str(foreign_dataset.pk)}
    experiment.save()
    with pytest.raises(ValidationError):
        run_launch(experiment=experiment, user=user)


def test_the_launch_button_explains_a_dataset_that_is_gone(signed_in, project, user,
                                                          experiment):
    sums = _dataset(project, user)
    experiment.config = {**experiment.config, "dataset": str(sums.pk)}
    experiment.save()
    sums.normalized_path.unlink()
    response = signed_in.post(reverse("runs:launch", args=[experiment.pk]), follow=True)
    assert "is missing from the dataset store" in response.content.decode()
    assert not experiment.runs.exists()


def test_the_dataset_page_lists_the_experiments_that_use_it(signed_in, project, user,
                                                           experiment):
    sums = _dataset(project, user)
    experiment.config = {**experiment.config, "dataset": str(sums.pk)}
    experiment.save()
    response = signed_in.get(sums.get_absolute_url())
    assert list(response.context["experiments"]) == [experiment]
