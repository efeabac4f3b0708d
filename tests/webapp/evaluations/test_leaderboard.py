"""The project leaderboard: one row per evaluation result, grouped by dataset, sorted by any
column (missing values last), filtered, best values marked, and exported as CSV and JSON with
exactly the rows the page shows."""

from __future__ import annotations

import csv
import doctest
import io
import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.evaluations import leaderboard
from webapp.experiments.models import ExperimentKind
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs.ingestion import MetricSample, metrics_ingest
from webapp.runs.models import Checkpoint
from webapp.runs.services import evaluation_launch, run_claim, run_launch, run_succeed
from webapp.teams.services import team_create

pytestmark = pytest.mark.django_db

HELD_OUT = "arithmetic · held-out"
TRAIN = "arithmetic · train"
START = timezone.now() - timedelta(days=1)


def ingest(run, step: int, metrics: dict[str, float], minutes: int) -> None:
    """`metrics` under eval/ at `step`, recorded `minutes` after START."""
    when = START + timedelta(minutes=minutes)
    metrics_ingest(run_id=run.pk, points=[MetricSample(key=f"eval/{key}", step=step, value=value,
                                                       wall_time=when)
                                          for key, value in metrics.items()])


def job(evaluation, user, metrics: dict[str, float], minutes: int, **target):
    """A succeeded evaluation job of `evaluation` on `target` (model= or checkpoint=)."""
    run = evaluation_launch(experiment=evaluation, user=user, **target)
    run_claim(run_id=run.pk, worker="w")
    ingest(run, run.evaluated_checkpoint.step if run.evaluated_checkpoint else 0, metrics,
           minutes)
    run_succeed(run_id=run.pk)
    return run


@pytest.fixture
def evaluation(project, user):
    return experiment_create(project=project, author=user, name="sums-eval", description="",
                             config={"task": "arithmetic", "samples": 4, "pass_ks": "1, 4",
                                     "maj_ks": "4"}, kind=ExperimentKind.EVALUATION)


@pytest.fixture
def train_split_evaluation(project, user):
    return experiment_create(project=project, author=user, name="sums-train-eval",
                             description="", config={"task": "arithmetic", "split": "train",
                                                     "samples": 2, "pass_ks": "1", "maj_ks": ""},
                             kind=ExperimentKind.EVALUATION)


@pytest.fixture
def results(evaluation, train_split_evaluation, experiment, user, tmp_path):
    """On the held-out prompts: a base model (0.50), a second base model without pass@1, a
    training run's periodic evaluations at steps 0 (0.30) and 10 (0.70), and a job on that
    run's step-10 checkpoint (0.80). On the train prompts: one base model (0.90)."""
    training = run_launch(experiment=experiment, user=user)
    ingest(training, 0, {"pass@1": 0.3, "pass@4": 0.5, "maj@4": 0.35, "avg@4": 0.3,
                         "prompts": 16, "samples": 4}, minutes=1)
    ingest(training, 10, {"pass@1": 0.7, "pass@4": 0.9, "maj@4": 0.75, "avg@4": 0.7,
                          "prompts": 16, "samples": 4}, minutes=20)
    checkpoint = Checkpoint.objects.create(run=training, step=10, path=str(tmp_path))
    runs = {
        "training": training,
        "base": job(evaluation, user, {"pass@1": 0.5, "pass@4": 0.75, "maj@4": 0.5,
                                       "avg@4": 0.5, "reward/mean": 0.5, "length/mean": 12.0,
                                       "prompts": 50, "samples": 4},
                    minutes=2, model="builtin:smollm2-135m-instruct"),
        "no_pass": job(evaluation, user, {"maj@4": 0.6, "prompts": 50, "samples": 4},
                       minutes=3, model="other-model"),
        "checkpoint": job(evaluation, user, {"pass@1": 0.8, "pass@4": 0.95, "maj@4": 0.8,
                                             "avg@4": 0.8, "reward/mean": 0.8,
                                             "length/mean": 7.5, "prompts": 50,
                                             "samples": 4},
                          minutes=30, checkpoint=checkpoint),
        "train_split": job(train_split_evaluation, user,
                           {"pass@1": 0.9, "avg@2": 0.9, "prompts": 8, "samples": 2},
                           minutes=5, model="builtin:smollm2-135m-instruct"),
    }
    return runs


def page(client, project, **params):
    response = client.get(reverse("evaluations:leaderboard", args=[project.pk]), params)
    assert response.status_code == 200
    return response


def keys(response, dataset: str | None = None) -> list[str]:
    """The shown rows' "<run id>@<step>", in order (of one dataset's group if named)."""
    return [row.result.key for group in response.context["board"].groups
            if dataset in (None, group.dataset) for row in group.rows]


def key(run, step: int = 0) -> str:
    return f"{run.pk}@{step}"


def export(client, project, fmt: str, **params):
    response = client.get(reverse("evaluations:leaderboard_export", args=[project.pk, fmt]), params)
    assert response.status_code == 200
    return response


def test_doctests_pass():
    assert doctest.testmod(leaderboard).failed == 0


def test_project_page_links_to_the_leaderboard(signed_in, project):
    body = signed_in.get(project.get_absolute_url()).content.decode()
    assert f'href="{reverse("evaluations:leaderboard", args=[project.pk])}"' in body


def test_rows_are_grouped_by_dataset_and_sorted_by_pass_at_1_best_first(signed_in, project,
                                                                        results):
    response = page(signed_in, project)
    board = response.context["board"]
    assert [group.dataset for group in board.groups] == [HELD_OUT, TRAIN]
    assert keys(response, HELD_OUT) == [key(results["checkpoint"], 10),
                                        key(results["training"], 10), key(results["base"]),
                                        key(results["training"], 0), key(results["no_pass"])]
    assert keys(response, TRAIN) == [key(results["train_split"])]


def test_ascending_order_still_puts_missing_values_last(signed_in, project, results):
    response = page(signed_in, project, sort="pass@1", order="asc")
    assert keys(response, HELD_OUT) == [key(results["training"], 0), key(results["base"]),
                                        key(results["training"], 10),
                                        key(results["checkpoint"], 10), key(results["no_pass"])]


def test_sorting_by_a_metric_that_some_rows_lack_puts_them_last(signed_in, project, results):
    """reward/mean: the periodic evaluations do not measure it; ties go to the newest."""
    for order, measured in (("desc", ["checkpoint", "base"]), ("asc", ["base", "checkpoint"])):
        response = page(signed_in, project, sort="reward/mean", order=order)
        assert keys(response, HELD_OUT) == [
            *(key(results[name], 10 if name == "checkpoint" else 0) for name in measured),
            key(results["training"], 10), key(results["no_pass"]), key(results["training"], 0)]


def test_sorting_by_model_is_alphabetical_and_flips(signed_in, project, results):
    def models(**params) -> list[str]:
        board = page(signed_in, project, dataset=HELD_OUT, sort="model", **params)
        return [row.result.model for row in board.context["board"].rows]

    assert models() == ["builtin:smollm2-135m-instruct", "grpo-small #1 · step 0",
                        "grpo-small #1 · step 10", "grpo-small #1 · step 10", "other-model"]
    assert models(order="desc") == models()[::-1]


def test_sorting_by_time_shows_the_newest_first(signed_in, project, results):
    assert keys(page(signed_in, project, sort="when"), HELD_OUT) == [
        key(results["checkpoint"], 10), key(results["training"], 10), key(results["no_pass"]),
        key(results["base"]), key(results["training"], 0)]


def test_a_header_link_sorts_by_its_column_and_flips_the_active_one(signed_in, project, results):
    body = page(signed_in, project).content.decode()
    base = reverse("evaluations:leaderboard", args=[project.pk])
    assert f'href="{base}?sort=maj%404"' in body  # another column: its default order
    assert f'href="{base}?order=asc"' in body  # the sorted column (pass@1 ▼): flips
    assert 'aria-sort="descending"' in body


def test_an_unknown_sort_or_order_falls_back_to_the_default(signed_in, project, results):
    response = page(signed_in, project, sort="<script>", order="sideways", source="nope")
    query = response.context["board"].query
    assert (query.sort, query.order, query.source) == ("pass@1", "desc", "all")
    assert keys(response) == keys(page(signed_in, project))


def test_dataset_filter_shows_only_that_dataset(signed_in, project, results):
    response = page(signed_in, project, dataset=TRAIN)
    assert keys(response) == [key(results["train_split"])]
    assert response.context["board"].metric_keys == ["pass@1", "avg@2"]
    body = response.content.decode()
    assert f'<option value="{TRAIN}" selected>' in body
    assert f'<option value="{HELD_OUT}">' in body  # the other one can still be picked


def test_jobs_only_leaves_out_evaluations_during_training(signed_in, project, results):
    response = page(signed_in, project, source="jobs", dataset=HELD_OUT)
    assert keys(response) == [key(results["checkpoint"], 10), key(results["base"]),
                              key(results["no_pass"])]


def test_best_per_model_keeps_each_runs_best_step(signed_in, project, results):
    """The run's periodic evaluations and its checkpoint's job are one model: step 10's job."""
    response = page(signed_in, project, best="1", dataset=HELD_OUT)
    assert keys(response) == [key(results["checkpoint"], 10), key(results["base"]),
                              key(results["no_pass"])]


def test_best_per_model_ranks_by_the_sorted_score(signed_in, project, results):
    response = page(signed_in, project, best="1", dataset=HELD_OUT, sort="maj@4")
    assert keys(response) == [key(results["checkpoint"], 10), key(results["no_pass"]),
                              key(results["base"])]


def test_the_best_value_of_each_column_is_marked_within_its_dataset(signed_in, project,
                                                                    results):
    response = page(signed_in, project)
    best = {(group.dataset, row.result.key, cell.key)
            for group in response.context["board"].groups
            for row in group.rows for cell in row.cells if cell.best}
    checkpoint = key(results["checkpoint"], 10)
    assert best == {(HELD_OUT, checkpoint, metric)
                    for metric in ("pass@1", "pass@4", "maj@4", "avg@4", "reward/mean")}
    body = response.content.decode()
    assert '<td class="num mono best" data-metric="pass@1"><strong' in body


def test_ties_are_all_marked_best(signed_in, project, evaluation, user):
    for minutes, model in enumerate(("model-a", "model-b")):
        job(evaluation, user, {"pass@1": 0.5}, minutes=minutes, model=model)
    board = page(signed_in, project).context["board"]
    assert [row.cells[0].best for row in board.rows] == [True, True]


def test_a_lone_result_is_not_marked_best(signed_in, project, evaluation, user):
    job(evaluation, user, {"pass@1": 0.5}, minutes=0, model="model-a")
    board = page(signed_in, project).context["board"]
    assert not any(cell.best for row in board.rows for cell in row.cells)


def test_job_and_periodic_rows_link_to_where_the_model_came_from(signed_in, project, results):
    rows = {row.result.key: row for row in page(signed_in, project).context["board"].rows}
    training, base = results["training"], results["base"]
    checkpoint = rows[key(results["checkpoint"], 10)]
    assert (checkpoint.source, checkpoint.result.model) == ("job", "grpo-small #1 · step 10")
    assert checkpoint.model_url == training.get_absolute_url()
    assert (rows[key(base)].source, rows[key(base)].model_url) == ("job", base.get_absolute_url())
    periodic = rows[key(training, 10)]
    assert (periodic.source, periodic.model_url) == ("training", training.get_absolute_url())
    assert (periodic.prompts, periodic.samples) == (16, 4)


def test_only_job_rows_can_be_picked_for_the_prompt_comparison(signed_in, project, results):
    body = page(signed_in, project).content.decode()
    jobs = [run for name, run in results.items() if name != "training"]
    for run in jobs:
        assert f'name="jobs" value="{run.pk}"' in body
    assert f'name="jobs" value="{results["training"].pk}"' not in body
    assert f'action="{reverse("evaluations:compare", args=[project.pk])}"' in body


def test_htmx_gets_the_table_alone(signed_in, project, results):
    response = signed_in.get(reverse("evaluations:leaderboard", args=[project.pk]),
                             {"sort": "maj@4"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="leaderboard"')
    assert 'id="leaderboard-filters"' not in body
    assert '<input type="hidden" name="sort" value="maj@4" form="leaderboard-filters">' in body
    assert "HX-Request" in response["Vary"]


def test_export_links_keep_the_query(signed_in, project, results):
    body = page(signed_in, project, sort="maj@4", order="asc", source="jobs").content.decode()
    csv_url = reverse("evaluations:leaderboard_export", args=[project.pk, "csv"])
    assert f'href="{csv_url}?source=jobs&amp;sort=maj%404&amp;order=asc"' in body


def test_csv_export_holds_the_rows_shown(signed_in, project, results):
    response = export(signed_in, project, "csv", dataset=HELD_OUT, source="jobs")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="arithmetic-leaderboard.csv"'
    reader = csv.reader(io.StringIO(response.content.decode()))
    header = next(reader)
    assert header == ["model", "dataset", "step", "source", "run_id", "pass@1", "pass@4",
                      "maj@4", "avg@4", "reward/mean", "length/mean", "prompts", "samples",
                      "evaluated_at"]
    rows = [dict(zip(header, line)) for line in reader]
    checkpoint, base, no_pass = results["checkpoint"], results["base"], results["no_pass"]
    assert [row["run_id"] for row in rows] == [str(checkpoint.pk), str(base.pk), str(no_pass.pk)]
    assert rows[0] == {
        "model": "grpo-small #1 · step 10", "dataset": HELD_OUT, "step": "10", "source": "job",
        "run_id": str(checkpoint.pk), "pass@1": "0.8", "pass@4": "0.95", "maj@4": "0.8",
        "avg@4": "0.8", "reward/mean": "0.8", "length/mean": "7.5", "prompts": "50",
        "samples": "4", "evaluated_at": (START + timedelta(minutes=30)).isoformat()}
    assert (rows[2]["model"], rows[2]["pass@1"], rows[2]["maj@4"]) == ("other-model", "", "0.6")


def test_json_export_holds_the_rows_shown_with_the_filters(signed_in, project, results):
    response = export(signed_in, project, "json", sort="pass@1", order="asc")
    assert response["Content-Disposition"] == \
        'attachment; filename="arithmetic-leaderboard.json"'
    data = json.loads(response.content)
    assert data["filters"] == {"dataset": None, "source": "all", "best_per_model": False,
                               "sort": "pass@1", "order": "asc"}
    shown = keys(page(signed_in, project, sort="pass@1", order="asc"))
    assert [f'{r["run_id"]}@{r["step"]}' for r in data["results"]] == shown
    periodic = data["results"][0]
    assert periodic == {
        "model": "grpo-small #1 · step 0", "dataset": HELD_OUT, "step": 0, "source": "training",
        "run_id": results["training"].pk, "pass@1": 0.3, "pass@4": 0.5, "maj@4": 0.35,
        "avg@4": 0.3, "avg@2": None, "reward/mean": None, "length/mean": None, "prompts": 16,
        "samples": 4, "evaluated_at": (START + timedelta(minutes=1)).isoformat()}
    assert data["columns"] == list(periodic)


def test_exports_apply_best_per_model_like_the_page(signed_in, project, results):
    data = json.loads(export(signed_in, project, "json", best="1").content)
    assert [f'{r["run_id"]}@{r["step"]}' for r in data["results"]] == \
        keys(page(signed_in, project, best="1"))
    assert data["filters"]["best_per_model"] is True


def test_csv_export_defuses_formulas_in_names(signed_in, project, user):
    evaluation = experiment_create(project=project, author=user, name="=HYPERLINK(1)",
                                   description="", config={"task": "arithmetic"},
                                   kind=ExperimentKind.EVALUATION)
    training = experiment_create(project=project, author=user, name="@sum", description="",
                                 config={"task": "arithmetic"})
    formula = experiment_create(project=project, author=user, name="=cmd", description="",
                                config={"task": "arithmetic"})
    job(evaluation, user, {"pass@1": 0.5}, minutes=0, model="org/model")
    ingest(run_launch(experiment=formula, user=user), 0, {"pass@1": 0.3}, minutes=0)
    ingest(run_launch(experiment=training, user=user), 0, {"pass@1": 0.1}, minutes=0)
    text = export(signed_in, project, "csv").content.decode()
    models = [row["model"] for row in csv.DictReader(io.StringIO(text))]
    assert models == ["org/model", "'=cmd #1 · step 0", "'@sum #1 · step 0"]


def test_empty_leaderboard_says_how_to_get_results(signed_in, project):
    body = page(signed_in, project).content.decode()
    assert 'id="leaderboard-empty"' in body
    assert reverse("experiments:create_evaluation", args=[project.pk]) in body
    assert "eval_every" in body
    assert 'id="leaderboard-filters"' not in body


def test_filters_that_match_nothing_say_so(signed_in, project, results):
    body = page(signed_in, project, dataset="gsm8k · all").content.decode()
    assert 'id="leaderboard-no-match"' in body


def test_results_of_another_project_are_not_shown(signed_in, project, user, results):
    other = project_create(team=project.team, name="Other", description="", user=user)
    assert page(signed_in, other).context["board"].total == 0
    data = json.loads(export(signed_in, other, "json").content)
    assert data["results"] == []


def test_queued_and_failed_jobs_are_not_on_the_board(signed_in, project, evaluation, user):
    evaluation_launch(experiment=evaluation, user=user, model="queued-model")
    assert page(signed_in, project).context["board"].total == 0


@pytest.mark.parametrize("name, fmt", [("evaluations:leaderboard", None),
                                       ("evaluations:leaderboard_export", "csv"),
                                       ("evaluations:leaderboard_export", "json")])
def test_outsider_gets_404(client, other_user, project, results, name, fmt):
    client.force_login(other_user)
    args = [project.pk] if fmt is None else [project.pk, fmt]
    assert client.get(reverse(name, args=args)).status_code == 404


def test_a_project_of_another_team_gets_404(signed_in, other_user):
    team = team_create(name="Elsewhere", user=other_user)
    elsewhere = project_create(team=team, name="Secret", description="", user=other_user)
    assert signed_in.get(reverse("evaluations:leaderboard", args=[elsewhere.pk])).status_code == 404


@pytest.mark.parametrize("fmt", ["xlsx", "CSV", "json.gz"])
def test_an_unknown_export_format_gets_404(signed_in, project, results, fmt):
    url = reverse("evaluations:leaderboard_export", args=[project.pk, fmt])
    assert signed_in.get(url).status_code == 404
