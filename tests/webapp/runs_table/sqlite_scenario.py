"""Run by test_sqlite in a process of its own, on the SQLite database its environment names (as
embedded mode runs): the runs table's every order, paged, its filters and groups, printed as
JSON for the test to check."""

import json
import re

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from training.spec.config import RunConfig  # noqa: E402
from webapp.experiments.services import experiment_create  # noqa: E402
from webapp.projects.services import project_create  # noqa: E402
from webapp.runs import ingestion, services  # noqa: E402
from webapp.runs_table.models import ColumnSet  # noqa: E402
from webapp.runs_table.selectors import project_runs, runs_page, sort_for  # noqa: E402
from webapp.teams.services import team_create  # noqa: E402

SORTS = ["created", "name", "duration", "config:seed", "config:learning_rate",
         "metric:last:loss", "metric:max:loss", "metric:mean:2:loss"]


def main() -> None:
    setup_test_environment()
    user = get_user_model().objects.create_user(username="ada", password="lovelace-1843")
    project = project_create(team=team_create(name="T", user=user), name="P", description="",
                             user=user)
    experiment = experiment_create(project=project, author=user, name="grpo", description="",
                                   config=RunConfig(max_steps=3).to_dict())
    runs = []
    for n in range(9):
        run = services.run_launch(experiment=experiment, user=user,
                                  overrides={"seed": n % 3, "learning_rate": [1e-5, 3e-5][n % 2]})
        if n % 4:
            ingestion.metrics_ingest(run_id=run.pk, points=[
                ingestion.MetricSample("loss", step, float(n % 3) + step, timezone.now())
                for step in (1, 2)])
        runs.append(run.pk)
    walks = {}
    for sort_id in SORTS:
        for ascending in (True, False):
            sort, seen = sort_for(sort_id, ascending), []
            page = runs_page(project_runs(project), sort, None, size=2)
            seen += [run.pk for run in page.rows]
            while page.next_cursor and len(seen) < 30:
                page = runs_page(project_runs(project), sort, page.next_cursor, size=2)
                seen += [run.pk for run in page.rows]
            walks[f"{sort_id} {ascending}"] = seen
    ColumnSet.objects.create(user=user, project=project, columns=[
        "metric:last:loss", "metric:mean:2:loss", "config:seed"])
    client = Client()
    client.force_login(user)
    pages = {}
    for query in ("", "sort=metric:last:loss&order=asc", "config_key=seed&config_value=1",
                  "metric_key=loss&metric_min=2.5", "group=seed_group",
                  "group=config&group_settings=learning_rate", "q=params.seed = 2"):
        response = client.get(f"/projects/{project.pk}/runs/?{query}")
        body = response.content.decode()
        pages[query] = [response.status_code, [int(pk) for pk in re.findall(r'data-run="(\d+)"',
                                                                             body)],
                        re.findall(r'<td class="num">([^<]*)</td>', body)]
    print(json.dumps({"runs": runs, "walks": walks, "pages": pages}))


if __name__ == "__main__":
    main()
