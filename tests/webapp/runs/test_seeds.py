"""Launching an experiment over several seeds at once: the launch form's seeds field
(webapp.runs.seed_list) and the API's `seeds`."""

from __future__ import annotations

import doctest
import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from webapp.api.tokens import token_create
from webapp.experiments.services import experiment_create
from webapp.runs import seed_list
from webapp.runs.models import Run
from webapp.runs.seed_list import seeds_parse

pytestmark = pytest.mark.django_db


def launch(client, experiment, seeds: str):
    return client.post(reverse("runs:launch", args=[experiment.pk]), {"seeds": seeds},
                       follow=True)


def seeds_of(experiment) -> list[int]:
    return sorted(run.config["seed"] for run in Run.objects.filter(experiment=experiment))


def test_doctests_pass():
    assert doctest.testmod(seed_list).failed == 0


@pytest.mark.parametrize(("text", "error"), [
    ("1, two", "'two' is not a seed"),
    ("5-2", "runs backwards"),
    ("0-500", "At most 100 seeds"),
    ("x0", "between 1 and 100 seeds"),
    ("x1000000000000", "between 1 and 100 seeds"),
    ("-1", "'-1' is not a seed"),
    ("１", "'１' is not a seed"),
])
def test_a_seeds_text_that_names_no_seeds_says_what_to_write(text, error):
    with pytest.raises(ValidationError) as caught:
        seeds_parse(text, first=0)
    assert error in caught.value.messages[0]


def test_the_experiment_page_has_a_seeds_field(signed_in, experiment):
    body = signed_in.get(experiment.get_absolute_url()).content.decode()
    assert 'name="seeds"' in body


def test_the_form_launches_one_run_per_listed_seed(signed_in, experiment):
    response = launch(signed_in, experiment, "1, 2, 3")

    assert seeds_of(experiment) == [1, 2, 3]
    assert response.redirect_chain[-1][0] == experiment.get_absolute_url()
    assert "Launched 3 runs, seeds 1, 2, 3." in response.content.decode()
    assert len({run.seed_group for run in Run.objects.filter(experiment=experiment)}) == 1


def test_a_count_launches_that_many_seeds_from_the_experiments_own(signed_in, project, user):
    experiment = experiment_create(project=project, author=user, name="seeded", description="",
                                   config={"max_steps": 3, "seed": 40})
    launch(signed_in, experiment, "x3")
    assert seeds_of(experiment) == [40, 41, 42]


def test_an_empty_seeds_field_launches_one_run_as_before(signed_in, experiment):
    response = launch(signed_in, experiment, "")
    run = Run.objects.get(experiment=experiment)
    assert response.redirect_chain[-1][0] == run.get_absolute_url()


def test_a_bad_seed_list_launches_nothing_and_says_why(signed_in, experiment):
    response = launch(signed_in, experiment, "1, 2, 2")

    assert "Each seed once: 2 given twice." in response.content.decode()
    assert not Run.objects.exists()


def test_a_seed_out_of_the_settings_bounds_launches_nothing(signed_in, experiment):
    response = launch(signed_in, experiment, f"1, {2**31}")

    assert "seed" in response.content.decode() and not Run.objects.exists()


def test_a_viewer_cannot_launch_seeds(experiment, member_of):
    client = Client()
    client.force_login(member_of("viewer"))
    assert launch(client, experiment, "1,2").status_code == 403
    assert not Run.objects.exists()


def api_launch(user, experiment, body):
    client = Client(headers={"Authorization": f"Bearer {token_create(user=user, name='t')[1]}"})
    return client.post(f"/api/experiments/{experiment.pk}/runs", json.dumps(body),
                       content_type="application/json")


def test_the_api_launches_seeds_and_answers_every_run(user, experiment):
    response = api_launch(user, experiment, {"seeds": [3, 1]})

    assert response.status_code == 201
    body = response.json()
    assert [run["config"]["seed"] for run in body] == [3, 1]
    assert [run["number"] for run in body] == [1, 2]
    assert seeds_of(experiment) == [1, 3]


def test_the_api_refuses_bad_seeds_and_launches_nothing(user, experiment):
    twice = api_launch(user, experiment, {"seeds": [1, 1]})
    empty = api_launch(user, experiment, {"seeds": []})
    on_a_model = api_launch(user, experiment, {"seeds": [1], "model": "builtin:x"})

    assert twice.status_code == 422 and "given twice" in twice.content.decode()
    assert empty.status_code == 422 and "at least one seed" in empty.content.decode()
    assert on_a_model.status_code == 422 and "Seeds are for" in on_a_model.content.decode()
    assert not Run.objects.exists()
