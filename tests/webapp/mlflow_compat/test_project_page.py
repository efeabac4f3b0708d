"""The tracking URI's own page, /mlflow/<project id>/, as a browser without JavaScript gets
it: the project's tracked runs as links (static/mlflow_link.js follows the mlflow client's run
links; tests/browser/test_mlflow_run_link.py)."""

from __future__ import annotations

import pytest

from webapp.runs.services import run_launch
from webapp.runs.tracking import tracked_experiment_get_or_create, tracked_run_create

pytestmark = pytest.mark.django_db


def test_it_lists_the_projects_tracked_runs_as_links(signed_in, project, user, experiment):
    script = tracked_experiment_get_or_create(project=project, user=user, name="sweep")
    run = tracked_run_create(experiment=script, user=user, name="<i>lr</i>")
    launched = run_launch(experiment=experiment, user=user)

    body = signed_in.get(f"/mlflow/{project.pk}/").content.decode()

    assert f'<a href="/runs/{run.pk}/">sweep #1 <span class="run-name">&lt;i&gt;lr' in body
    assert f"/runs/{launched.pk}/" not in body  # launched from rlab, not tracked
    assert 'data-run-url="/runs/0/"' in body and "mlflow_link.js" in body


def test_an_outsider_gets_404_and_a_stranger_the_login_page(client, project, other_user):
    assert client.get(f"/mlflow/{project.pk}/").status_code == 302
    client.force_login(other_user)
    assert client.get(f"/mlflow/{project.pk}/").status_code == 404
