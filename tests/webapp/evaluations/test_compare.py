"""Comparing two evaluation jobs prompt by prompt: counts per category, Δ accuracy, the order
(changed prompts first, by |Δ|), the category filter, the warnings, and access."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from django.urls import reverse
from django.utils import timezone

from webapp.evaluations.compare import (
    BOTH_SOLVED,
    BOTH_UNSOLVED,
    IMPROVED,
    REGRESSED,
    compare_jobs,
    tallies,
)
from webapp.evaluations.views import PAGE_PROMPTS
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.runs import ingestion, services
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

RECIPE = {"task": "arithmetic", "samples": 4, "pass_ks": "1, 4", "maj_ks": "4"}


@pytest.fixture
def evaluation(project, user):
    return experiment_create(project=project, author=user, name="sums-eval", description="",
                             config=RECIPE, kind="evaluation")


def job(evaluation, user, verdicts: dict[str, list[bool]], *, step: int = 0,
        model: str = "builtin:smollm2-135m-instruct", succeed: bool = True) -> Run:
    """A job whose prompt `a+b` got these correct/wrong samples, stored as the evaluation
    stores them."""
    run = services.evaluation_launch(experiment=evaluation, user=user, model=model)
    services.run_claim(run_id=run.pk, worker="w")
    items = []
    for group, (prompt_id, correct) in enumerate(verdicts.items()):
        a, b = prompt_id.split("+")
        answer = str(int(a) + int(b))
        for i, ok in enumerate(correct):
            items.append({
                "prompt": f"Compute {a} + {b}.", "prompt_id": prompt_id, "group": group,
                "sample_index": i, "completion": f"{prompt_id} = {answer if ok else 0} (#{i})",
                "reward": float(ok), "rewards": {"correct": float(ok)}, "advantage": None,
                "completion_tokens": 5, "truncated": False,
                "extra": {"answer": answer, "correct": ok,
                          "extracted_answer": answer if ok else "0"}})
    ingestion.rollouts_ingest(run_id=run.pk, step=step, items=items)
    accuracy = [sum(v) / len(v) for v in verdicts.values()]
    ingestion.metrics_ingest(run_id=run.pk, points=[ingestion.MetricSample(
        key="eval/pass@1", step=step, value=sum(accuracy) / len(accuracy),
        wall_time=timezone.now())])
    if succeed:
        services.run_succeed(run_id=run.pk)
    return Run.objects.get(pk=run.pk)


T, F = True, False
BEFORE = {"1+1": [T, T, T, T], "2+2": [F, F, F, F], "3+3": [F, F, F, T], "4+4": [T, T, T, F],
          "5+5": [T, T, F, F], "6+6": [F, F, F, F]}
AFTER = {"1+1": [T, T, T, T], "2+2": [T, T, T, F], "3+3": [T, T, F, F], "4+4": [F, F, F, F],
         "5+5": [T, F, F, F], "6+6": [F, T, F, F]}
# 1+1 solved in both (Δ 0); 2+2 improved (Δ +0.75); 3+3 improved (+0.25); 4+4 regressed
# (-0.75); 5+5 regressed (-0.25); 6+6 unsolved in both (+0.25)


@pytest.fixture
def pair(evaluation, user):
    return job(evaluation, user, BEFORE), job(evaluation, user, AFTER, model="org/step-20")


def get(client, project, **params):
    return client.get(reverse("evaluations:compare", args=[project.pk]), params)


def rows(response) -> list[tuple[str, str, str]]:
    """(prompt id, category, Δ) of the prompt table's rows, in order."""
    assert response.status_code == 200
    body = response.content.decode()
    return re.findall(r'<tr class="prompt-row" data-prompt-id="([^"]+)" data-category="([^"]+)">'
                      r'.*?<td class="mono delta">([^<]+)</td>', body, re.S)


def count(response, category: str) -> int:
    found = re.search(rf'<tr data-category="{category}">.*?<td class="mono count">(\d+)</td>',
                      response.content.decode(), re.S)
    return int(found.group(1))


def test_counts_correct_samples_per_prompt_in_the_database(pair):
    before, _ = pair
    counted = tallies(before)
    assert {p: (t.correct, t.samples) for p, t in counted.items()} == {
        "1+1": (4, 4), "2+2": (0, 4), "3+3": (1, 4), "4+4": (3, 4), "5+5": (2, 4),
        "6+6": (0, 4)}
    assert counted["5+5"].solved and not counted["3+3"].solved  # half is a majority here


def test_a_sample_without_a_verdict_is_correct_when_its_reward_reaches_one(evaluation, user):
    run = job(evaluation, user, {"1+1": [T, F]})
    ingestion.rollouts_ingest(run_id=run.pk, step=0, items=[
        {"prompt": "Compute 9 + 9.", "prompt_id": "9+9", "group": 5, "sample_index": i,
         "completion": "18", "reward": reward} for i, reward in enumerate([1.0, 0.5, 2.0])])
    assert (tallies(run)["9+9"].correct, tallies(run)["9+9"].samples) == (2, 3)


def test_categories_delta_and_means(pair):
    comparison = compare_jobs(*pair)
    by_id = {row.prompt_id: row for row in comparison.shared}
    assert {p: row.category for p, row in by_id.items()} == {
        "1+1": BOTH_SOLVED, "2+2": IMPROVED, "3+3": IMPROVED, "4+4": REGRESSED,
        "5+5": REGRESSED, "6+6": BOTH_UNSOLVED}
    assert by_id["2+2"].delta == pytest.approx(0.75)
    assert by_id["4+4"].delta == pytest.approx(-0.75)
    assert comparison.counts == {IMPROVED: 2, REGRESSED: 2, BOTH_SOLVED: 1, BOTH_UNSOLVED: 1,
                                 "changed": 4}
    assert comparison.mean_a == pytest.approx((4 + 0 + 1 + 3 + 2 + 0) / 24)
    assert comparison.mean_b == pytest.approx((4 + 3 + 2 + 0 + 1 + 1) / 24)
    assert not comparison.recipe_differences and not comparison.only_a


def test_page_lists_changed_prompts_first_by_size_of_change(signed_in, project, pair):
    before, after = pair
    response = get(signed_in, project, a=before.pk, b=after.pk)
    assert rows(response) == [
        ("2+2", IMPROVED, "+0.75"), ("4+4", REGRESSED, "-0.75"), ("3+3", IMPROVED, "+0.25"),
        ("5+5", REGRESSED, "-0.25"), ("6+6", BOTH_UNSOLVED, "+0.25"),
        ("1+1", BOTH_SOLVED, "+0.00")]
    assert count(response, IMPROVED) == 2 and count(response, REGRESSED) == 2
    assert count(response, BOTH_SOLVED) == 1 and count(response, BOTH_UNSOLVED) == 1
    body = response.content.decode()
    assert re.search(r'id="summary-delta">.*?<td class="mono">\+0\.042</td>', body, re.S)
    assert "accuracy ≥ 0.5" in body
    assert "sums-eval #1 · builtin:smollm2-135m-instruct" in body
    assert "sums-eval #2 · org/step-20" in body
    assert 'id="compare-warnings"' not in body


def test_each_side_links_to_its_samples_of_the_prompt(signed_in, project, pair):
    before, after = pair
    body = get(signed_in, project, a=before.pk, b=after.pk).content.decode()
    row = re.search(r'data-prompt-id="2\+2".*?</tr>', body, re.S).group(0)
    assert "Compute 2 + 2." in row and '<td class="mono">4</td>' in row  # text and answer
    assert f'href="{reverse("rollouts:prompt_history", args=[before.pk, "2+2"])}"' in row
    assert f'href="{reverse("rollouts:prompt_history", args=[after.pk, "2+2"])}"' in row
    assert ">0/4<" in row and ">3/4<" in row
    samples = signed_in.get(reverse("rollouts:prompt_history", args=[after.pk, "2+2"]))
    assert samples.status_code == 200
    assert samples.content.decode().count("2+2 = 4 (#") == 3  # every sample, with its reward


def test_filter_shows_one_category(signed_in, project, pair):
    before, after = pair
    assert rows(get(signed_in, project, a=before.pk, b=after.pk, category=REGRESSED)) == [
        ("4+4", REGRESSED, "-0.75"), ("5+5", REGRESSED, "-0.25")]
    assert [r[0] for r in rows(get(signed_in, project, a=before.pk, b=after.pk,
                                   category="changed"))] == ["2+2", "4+4", "3+3", "5+5"]
    assert [r[0] for r in rows(get(signed_in, project, a=before.pk, b=after.pk,
                                   category=BOTH_SOLVED))] == ["1+1"]
    # an unknown category shows every prompt
    assert len(rows(get(signed_in, project, a=before.pk, b=after.pk, category="nope"))) == 6


def test_swapping_a_and_b_swaps_improved_and_regressed(pair):
    before, after = pair
    comparison = compare_jobs(after, before)
    assert {row.prompt_id for row in comparison.rows(IMPROVED)} == {"4+4", "5+5"}


def test_thousands_of_prompts_are_paged(signed_in, project, evaluation, user):
    many = {f"{i}+{i}": [F, F] for i in range(PAGE_PROMPTS + 20)}
    before = job(evaluation, user, many)
    after = job(evaluation, user, {**many, "3+3": [T, T]})
    first = get(signed_in, project, a=before.pk, b=after.pk)
    assert len(rows(first)) == PAGE_PROMPTS
    assert rows(first)[0][:2] == ("3+3", IMPROVED)
    second = get(signed_in, project, a=before.pk, b=after.pk, page=2)
    assert len(rows(second)) == 20
    assert "page 2 of 2" in second.content.decode()


def test_warns_when_the_recipes_differ_and_names_the_settings(signed_in, project, user,
                                                              evaluation):
    hotter = experiment_create(project=project, author=user, name="sums-eval-hot",
                               description="", kind="evaluation",
                               config={**RECIPE, "temperature": 1.0, "samples": 2,
                                       "pass_ks": "1", "maj_ks": ""})
    before = job(evaluation, user, {"1+1": [T, F, F, F]})
    after = job(hotter, user, {"1+1": [T, T]})
    response = get(signed_in, project, a=before.pk, b=after.pk)
    body = response.content.decode()
    warning = re.search(r'id="recipe-warning">.*?</li>', body, re.S).group(0)
    differing = re.findall(r'<tr data-key="([^"]+)">', warning)
    assert set(differing) == {"temperature", "samples", "pass_ks", "maj_ks"}
    assert "model" not in differing
    assert rows(response) == [("1+1", IMPROVED, "+0.75")]


def test_prompts_on_one_side_only_are_counted_and_listed_apart(signed_in, project, pair,
                                                               evaluation, user):
    before, _ = pair
    other = job(evaluation, user, {"1+1": [T, T, T, T], "8+8": [T, T, F, F]})
    response = get(signed_in, project, a=before.pk, b=other.pk)
    body = response.content.decode()
    assert [r[0] for r in rows(response)] == ["1+1"]
    assert "5 only in A and 1 only in B" in body
    only_b = re.search(r'<div id="only-b">.*?</table>', body, re.S).group(0)
    assert 'data-prompt-id="8+8"' in only_b and ">2/4<" in only_b
    assert re.search(r'<div id="only-a">.*?data-prompt-id="6\+6"', body, re.S)


def test_the_same_id_with_another_prompt_text_is_marked(evaluation, user, pair):
    before, _ = pair
    other = job(evaluation, user, {"1+1": [T]})
    ingestion.rollouts_ingest(run_id=other.pk, step=0, items=[
        {"prompt": "Something else entirely", "prompt_id": "2+2", "group": 1,
         "sample_index": 0, "completion": "4", "reward": 1.0, "extra": {"correct": True}}])
    comparison = compare_jobs(before, other)
    assert comparison.text_mismatches == 1
    assert [row.prompt_id for row in comparison.shared if row.text_differs] == ["2+2"]


def test_without_both_jobs_the_page_is_a_picker_of_succeeded_jobs(signed_in, project, pair,
                                                                   evaluation, user):
    before, after = pair
    running = job(evaluation, user, {"1+1": [T]}, succeed=False)
    response = get(signed_in, project)
    assert response.status_code == 200
    body = response.content.decode()
    picker = re.search(r'<select id="pick-a" name="a">.*?</select>', body, re.S).group(0)
    options = re.findall(r'<option value="(\d+)"', picker)
    assert options == [str(after.pk), str(before.pk)]  # newest job first
    assert str(running.pk) not in options
    assert 'id="prompt-rows"' not in body


def test_ticked_jobs_go_to_the_pair_in_training_order(signed_in, project, evaluation, user):
    late = job(evaluation, user, {"1+1": [T]}, step=30, model="org/late")
    base = job(evaluation, user, {"1+1": [F]})
    response = get(signed_in, project, jobs=[late.pk, base.pk])
    assert response.status_code == 302
    query = parse_qs(urlparse(response["Location"]).query)
    assert query == {"a": [str(base.pk)], "b": [str(late.pk)]}


def test_ticking_other_than_two_jobs_says_so(signed_in, project, pair):
    response = get(signed_in, project, jobs=[pair[0].pk])
    assert response.status_code == 400
    assert "Tick exactly two jobs" in response.content.decode()


def test_a_training_run_is_refused_with_a_message(signed_in, project, pair, experiment, user):
    training = services.run_launch(experiment=experiment, user=user)
    response = get(signed_in, project, a=pair[0].pk, b=training.pk)
    assert response.status_code == 400
    body = response.content.decode()
    assert "grpo-small #1 is a training run, not an evaluation job" in body
    assert 'id="prompt-rows"' not in body


def test_an_id_that_is_not_a_number_is_refused_with_a_message(signed_in, project, pair):
    response = get(signed_in, project, a=pair[0].pk, b="seven")
    assert response.status_code == 400
    assert "is not a job id" in response.content.decode()


def test_a_job_of_another_project_is_404(signed_in, project, team, user, pair):
    elsewhere = project_create(team=team, name="Elsewhere", description="", user=user)
    foreign_eval = experiment_create(project=elsewhere, author=user, name="e", description="",
                                     config=RECIPE, kind="evaluation")
    foreign = job(foreign_eval, user, {"1+1": [T]})
    assert get(signed_in, project, a=pair[0].pk, b=foreign.pk).status_code == 404
    assert get(signed_in, project, a=pair[0].pk, b=10**9).status_code == 404


def test_an_outsider_gets_404(client, other_user, project, pair):
    client.force_login(other_user)
    assert get(client, project, a=pair[0].pk, b=pair[1].pk).status_code == 404


def test_a_viewer_may_compare(client, member_of, project, pair):
    client.force_login(member_of("viewer"))
    assert len(rows(get(client, project, a=pair[0].pk, b=pair[1].pk))) == 6


def test_the_evaluation_page_offers_to_compare_its_jobs(signed_in, evaluation, pair):
    body = signed_in.get(evaluation.get_absolute_url()).content.decode()
    form = re.search(r'<form id="compare-jobs-form"[^>]*>', body).group(0)
    assert reverse("evaluations:compare", args=[evaluation.project_id]) in form
    assert re.findall(r'<input type="checkbox" name="jobs" value="(\d+)"', body) == [
        str(pair[1].pk), str(pair[0].pk)]
    assert "Compare prompts" in body
