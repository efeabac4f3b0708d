"""A tracked run is shown by the name its script gave it (MLflow's run_name, rlab.init's name),
beside its experiment and number: on its page, its experiment's list and the comparison."""

from __future__ import annotations

import pytest
from django.urls import reverse

from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = pytest.mark.django_db

NAME = "lr 1e-6 <b>bold</b>"
SHOWN = "lr 1e-6 &lt;b&gt;bold&lt;/b&gt;"


@pytest.fixture
def named_runs(project, user):
    script = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    return [tracked_run_create(experiment=script, user=user, name=NAME),
            tracked_run_create(experiment=script, user=user)]


def test_the_run_page_is_titled_by_the_runs_name(signed_in, named_runs):
    body = signed_in.get(reverse("runs:detail", args=[named_runs[0].pk])).content.decode()
    assert f"<title>{SHOWN} · sweep #1" in body
    assert NAME not in body


def test_the_experiments_list_and_the_comparison_show_the_runs_name(signed_in, named_runs,
                                                                    project):
    named, unnamed = named_runs
    listing = signed_in.get(named.experiment.get_absolute_url()).content.decode()
    compare = signed_in.get(reverse("runs:compare", args=[project.pk]),
                            {"runs": [named.pk, unnamed.pk]}).content.decode()
    for body in (listing, compare):
        assert f'#1 <span class="run-name">{SHOWN}</span>' in body
        assert f'#{unnamed.number}</a>' in body
    assert f"sweep #1 · {SHOWN}" in compare
