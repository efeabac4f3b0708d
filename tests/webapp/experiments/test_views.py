import pytest
from django.urls import reverse

from training.spec.config import RunConfig
from webapp.experiments.models import Experiment
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db


def _form_data(**overrides):
    data = {"name": "lr-sweep-1", "description": "", **RunConfig().to_dict()}
    data.update(overrides)
    return data


def test_create_page_requires_login(client, project):
    url = reverse("experiments:create", args=[project.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_create_form_shows_defaults_and_help(signed_in, project):
    response = signed_in.get(reverse("experiments:create", args=[project.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="group_size"' in body and 'value="8"' in body
    assert "completions per prompt" in body


def test_valid_form_saves_the_experiment(signed_in, project, user):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(learning_rate="3e-5"))
    experiment = Experiment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == experiment.get_absolute_url()
    assert experiment.config["learning_rate"] == 3e-5
    assert experiment.author == user


@pytest.mark.parametrize("field,value,message", [
    ("group_size", "0", "greater than or equal to 1"),
    ("group_size", "1", "GRPO compares completions of the same prompt"),
    ("learning_rate", "fast", "Enter a number"),
    ("temperature", "0", "greater than or equal to 0.05"),
    ("task", "chess", "Select a valid choice"),
    ("model", "  ", "This field is required"),
])
def test_invalid_hyperparameters_give_field_errors_and_save_nothing(signed_in, project, field,
                                                                    value, message):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(**{field: value}))
    assert response.status_code == 422
    errors = response.context["form"].errors
    assert list(errors) == [field]
    assert message in errors[field][0]
    assert not Experiment.objects.exists()


def test_duplicate_name_in_a_project_is_refused(signed_in, project, experiment):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(name=experiment.name))
    assert response.status_code == 422
    assert "already has an experiment" in response.context["form"].errors["name"][0]


def test_htmx_post_with_errors_returns_only_the_form(signed_in, project):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]),
                              _form_data(group_size="0"), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 422
    assert body.lstrip().startswith("<form") and "<html" not in body
    assert 'id="experiment-form"' in body


def test_htmx_post_that_saves_redirects_the_client(signed_in, project):
    response = signed_in.post(reverse("experiments:create", args=[project.pk]), _form_data(),
                              HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == Experiment.objects.get().get_absolute_url()


def test_edit_changes_the_definition_but_not_launched_runs(signed_in, experiment, user):
    from webapp.runs.services import run_launch

    run = run_launch(experiment=experiment, user=user)
    data = _form_data(name=experiment.name, **{"max_steps": "7"})
    response = signed_in.post(reverse("experiments:edit", args=[experiment.pk]), data)
    assert response.status_code == 302
    experiment.refresh_from_db()
    run.refresh_from_db()
    assert experiment.config["max_steps"] == 7
    assert run.config["max_steps"] == 3


def test_launch_creates_a_run_and_redirects_to_it(signed_in, experiment):
    response = signed_in.post(reverse("runs:launch", args=[experiment.pk]))
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == run.get_absolute_url()


def test_launch_needs_post(signed_in, experiment):
    response = signed_in.get(reverse("runs:launch", args=[experiment.pk]))
    assert response.status_code == 405
    assert not Run.objects.exists()


def test_unknown_experiment_is_404(signed_in):
    assert signed_in.get(reverse("experiments:detail", args=[999])).status_code == 404


def test_loss_options_are_saved_from_the_form(signed_in, project):
    data = _form_data(loss_type="dapo", epsilon_high="0.28", mask_truncated="on",
                      kl_estimator="k2")
    response = signed_in.post(reverse("experiments:create", args=[project.pk]), data)
    assert response.status_code == 302
    config = Experiment.objects.get().config
    assert (config["loss_type"], config["epsilon_high"], config["mask_truncated"],
            config["kl_estimator"]) == ("dapo", 0.28, True, "k2")


def test_an_unchecked_box_saves_false(signed_in, project):
    data = _form_data()
    data.pop("mask_truncated")
    signed_in.post(reverse("experiments:create", args=[project.pk]), data)
    assert Experiment.objects.get().config["mask_truncated"] is False
