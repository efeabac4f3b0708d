"""What a run may load (webapp.runs.model_sources): references checked against the project and
the model roots, the same answer for another project's checkpoint as for none, and folders
only for the worker."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from training.spec.algorithms import KDRLSettings
from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from webapp.experiments.models import ExperimentKind
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import model_sources, services
from webapp.runs.models import Checkpoint
from webapp.teams.services import team_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def roots(settings, tmp_path):
    """Two model roots: a folder model, a GGUF file, a group/name model, a hidden folder, and a
    link that leads out of the root."""
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for folder in (first / "llama", first / "org" / "qwen", first / ".cache" / "x",
                   second / "llama", outside / "secret"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (first / "small.gguf").write_bytes(b"GGUF")
    (first / "escape").symlink_to(outside / "secret")
    settings.RLAB_MODEL_ROOTS = [first, second]
    return first, second


@pytest.fixture
def checkpoint(experiment, user, tmp_path):
    run = services.run_launch(experiment=experiment, user=user)
    folder = tmp_path / "run" / "checkpoint-3"
    folder.mkdir(parents=True)
    return Checkpoint.objects.create(run=run, step=3, path=str(folder))


@pytest.fixture
def other_project(other_user):
    return project_create(team=team_create(name="Elsewhere", user=other_user), name="Theirs",
                          description="", user=other_user)


def errors(project, **config) -> dict[str, str]:
    return model_sources.config_model_errors(
        project_id=project.pk, config=RunConfig(**config).to_dict(), config_class=RunConfig)


def test_registered_models_are_the_folders_and_gguf_files_under_the_roots(roots):
    first, _ = roots
    assert model_sources.registered_models() == {
        "escape": first / "escape", "llama": first / "llama", "org/qwen": first / "org" / "qwen",
        "small.gguf": first / "small.gguf"}


def test_a_link_out_of_a_model_root_cannot_be_loaded(roots, project):
    assert errors(project, model="local:escape") == {"model": (
        "no model is registered as 'local:escape': pick one from the list, or ask an "
        "administrator to put it under a model root (RLAB_MODEL_ROOTS)")}


def test_a_registered_model_resolves_to_its_folder_for_the_worker(roots, project):
    first, _ = roots
    config = RunConfig(model="local:org/qwen", reward_models="local:llama, org/rm").to_dict()
    resolved = model_sources.config_for_worker(project_id=project.pk, config=config,
                                               config_class=RunConfig)
    assert resolved["model"] == str(first / "org" / "qwen")
    assert resolved["reward_models"] == f"{first / 'llama'}, org/rm"


def test_another_projects_checkpoint_is_answered_as_one_that_does_not_exist(
        checkpoint, other_project):
    theirs = errors(other_project, model=f"checkpoint:{checkpoint.pk}")
    missing = errors(other_project, model="checkpoint:999999")
    assert theirs == {"model": f"this project has no checkpoint {checkpoint.pk}"}
    assert missing == {"model": "this project has no checkpoint 999999"}
    assert checkpoint.path not in str(theirs)


def test_a_checkpoint_of_the_project_resolves_to_its_folder(checkpoint, project):
    config = RunConfig(model=f"checkpoint:{checkpoint.pk}",
                       resume_from=f"checkpoint:{checkpoint.pk}").to_dict()
    resolved = model_sources.config_for_worker(project_id=project.pk, config=config,
                                               config_class=RunConfig)
    assert resolved["model"] == resolved["resume_from"] == checkpoint.path


def test_a_checkpoint_whose_folder_is_gone_says_so(checkpoint, project):
    checkpoint.path = "/nowhere/checkpoint-3"
    checkpoint.save()
    assert "is gone" in errors(project, model=f"checkpoint:{checkpoint.pk}")["model"]


def test_an_unknown_builtin_model_lists_the_known_ones(project):
    assert errors(project, model="builtin:gpt-17") == {"model": (
        "there is no built-in model 'gpt-17'; built-in: builtin:smollm2-135m-instruct")}


def test_hub_ids_are_left_to_the_worker(project):
    assert errors(project, model="HuggingFaceTB/SmolLM2-360M-Instruct") == {}


def test_an_experiment_naming_another_projects_checkpoint_is_not_saved(checkpoint,
                                                                       other_project,
                                                                       other_user):
    with pytest.raises(ConfigError) as info:
        experiment_create(project=other_project, author=other_user, name="stolen",
                          description="",
                          config={"reference_soup": f"builtin:smollm2-135m-instruct, "
                                                    f"checkpoint:{checkpoint.pk}",
                                  "reference": "soup"})
    assert info.value.errors == {
        "reference_soup": f"this project has no checkpoint {checkpoint.pk}"}


def test_a_kdrl_teacher_is_checked_and_resolved_as_the_policy_is(roots, checkpoint, project,
                                                                  other_project, other_user):
    first, _ = roots
    config = RunConfig(algorithm="kdrl",
                       algorithm_settings=KDRLSettings(kd_teacher="local:org/qwen")).to_dict()
    resolved = model_sources.config_for_worker(project_id=project.pk, config=config,
                                               config_class=RunConfig)
    assert resolved["kd_teacher"] == str(first / "org" / "qwen")
    assert errors(project, algorithm="kdrl",
                  algorithm_settings=KDRLSettings(kd_teacher="local:nobody")) == {
        "kd_teacher": "no model is registered as 'local:nobody': pick one from the list, or ask "
                      "an administrator to put it under a model root (RLAB_MODEL_ROOTS)"}
    with pytest.raises(ConfigError) as info:
        experiment_create(project=other_project, author=other_user, name="taught",
                          description="", config={"algorithm": "kdrl",
                                                  "kd_teacher": f"checkpoint:{checkpoint.pk}"})
    assert info.value.errors == {"kd_teacher": f"this project has no checkpoint {checkpoint.pk}"}


def test_evaluating_a_checkpoint_by_reference_records_the_checkpoint(checkpoint, project, user):
    evaluation = experiment_create(project=project, author=user, name="sums", description="",
                                   config={}, kind=ExperimentKind.EVALUATION)
    job = services.evaluation_launch(experiment=evaluation, user=user,
                                     model=f" checkpoint:{checkpoint.pk} ")
    assert job.evaluated_checkpoint == checkpoint
    assert job.config["model"] == f"checkpoint:{checkpoint.pk}"


def test_an_evaluation_of_a_path_is_refused_without_looking_at_it(project, user):
    evaluation = experiment_create(project=project, author=user, name="sums", description="",
                                   config={}, kind=ExperimentKind.EVALUATION)
    for path in ("/etc", "/no/such/folder"):
        with pytest.raises(ValidationError) as info:
            services.evaluation_launch(experiment=evaluation, user=user, model=path)
        assert "a path on the worker is not accepted" in info.value.messages[0]
        assert "exist" not in info.value.messages[0]


def test_the_worker_fails_a_run_whose_model_is_gone(checkpoint, experiment, user):
    experiment.config = {**experiment.config, "model": f"checkpoint:{checkpoint.pk}"}
    experiment.save()
    run = services.run_launch(experiment=experiment, user=user)
    checkpoint.path = "/nowhere/checkpoint-3"
    checkpoint.save()
    assert services.run_worker_config(run_id=run.pk) is None
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error_message.startswith(f"model: the folder of {checkpoint}")


def test_the_form_offers_builtin_registered_and_checkpoint_models(roots, signed_in, project,
                                                                  checkpoint):
    page = signed_in.get(reverse("experiments:create", args=[project.pk])).content.decode()
    assert 'list="model-choices"' in page
    for value in ("builtin:smollm2-135m-instruct", "local:org/qwen",
                  f"checkpoint:{checkpoint.pk}"):
        assert f'<option value="{value}">' in page


def test_the_form_refuses_a_path_and_keeps_what_was_typed(signed_in, project):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]), {
        **{f.name: f.default for f in RunConfig.fields() if not isinstance(f.default, bool)},
        "name": "peek", "model": "/srv/rlab/runs/run-1-20261201-000000/checkpoint-2"})
    body = response.content.decode()
    assert "a path on the worker is not accepted" in body
    assert "run-1-20261201-000000" in body  # kept in the field, to be corrected
    assert not project.experiments.filter(name="peek").exists()


def test_an_evaluation_config_checks_its_model_field_like_a_run(project):
    with pytest.raises(ConfigError, match="a path on the worker"):
        EvalConfig.from_dict({"model": "~/models"})
