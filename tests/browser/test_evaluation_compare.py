"""Two evaluation jobs compared prompt by prompt in a real browser: ticked on the evaluation's
page, the prompt that improved is listed first, and its link opens B's samples of it."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.stack import start_web
from webapp.experiments.services import experiment_create
from webapp.runs import ingestion, services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RECIPE = {"task": "arithmetic", "samples": 4, "pass_ks": "1, 4", "maj_ks": "4"}
PAYLOAD = "<script>window.__pwned = 'script'</script><img src=x onerror=\"window.__pwned = 1\">"


@pytest.fixture
def stack(transactional_db, tmp_path):
    """The web server alone: these pages read stored samples, nothing is evaluated."""
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def finished_job(evaluation, user, model: str, verdicts: dict[str, list[bool]],
                 completion: str = "{prompt_id} = {answer}"):
    """A succeeded job whose samples of each prompt were judged as `verdicts` says."""
    run = services.evaluation_launch(experiment=evaluation, user=user, model=model)
    services.run_claim(run_id=run.pk, worker="w")
    items = []
    for group, (prompt_id, correct) in enumerate(verdicts.items()):
        answer = str(sum(map(int, prompt_id.split("+"))))
        items += [{"prompt": f"Compute {prompt_id.replace('+', ' + ')}.", "prompt_id": prompt_id,
                   "group": group, "sample_index": i, "reward": float(ok),
                   "completion": completion.format(prompt_id=prompt_id, i=i,
                                                   answer=answer if ok else "0"),
                   "rewards": {"correct": float(ok)}, "completion_tokens": 4,
                   "extra": {"answer": answer, "correct": ok}}
                  for i, ok in enumerate(correct)]
    ingestion.rollouts_ingest(run_id=run.pk, step=0, items=items)
    ingestion.metrics_ingest(run_id=run.pk, points=[ingestion.MetricSample(
        key="eval/pass@1", step=0, value=0.5, wall_time=timezone.now())])
    services.run_succeed(run_id=run.pk)
    return run


def test_ticked_jobs_compared_and_an_improved_prompt_opened(page, user, project):
    evaluation = experiment_create(project=project, author=user, name="sums-eval",
                                   description="", config=RECIPE, kind="evaluation")
    before = finished_job(evaluation, user, "builtin:smollm2-135m-instruct",
                          {"2+3": [False] * 4, "4+4": [True] * 4,
                           "1+6": [True, True, False, False]})
    after = finished_job(evaluation, user, "org/step-20",
                         {"2+3": [True, True, True, False], "4+4": [True] * 4,
                          "1+6": [False] * 4},
                         completion="sample {i}: {prompt_id} is {answer}")

    sign_in(page)
    page.goto(evaluation.get_absolute_url())
    page.check(f"#compare-job-{after.pk}")
    page.check(f"#compare-job-{before.pk}")
    page.click("#compare-prompts")

    expect(page.get_by_role("heading", name="Compare evaluation jobs")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"\?a={before.pk}&b={after.pk}$"))  # base model is A
    expect(page.locator("#pick-a")).to_have_value(str(before.pk))
    expect(page.locator("#category-counts tr[data-category='improved'] .count")).to_have_text("1")
    expect(page.locator("#category-counts tr[data-category='regressed'] .count")).to_have_text("1")
    rows = page.locator("#prompt-rows tr.prompt-row")
    expect(rows).to_have_count(3)
    improved = rows.nth(0)
    expect(improved).to_have_attribute("data-prompt-id", "2+3")
    expect(improved).to_contain_text("Compute 2 + 3.")
    expect(improved.locator(".delta")).to_have_text("+0.75")

    page.click("#filter-regressed")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-prompt-id", "1+6")
    page.go_back()

    page.locator("#prompt-rows tr[data-prompt-id='2+3'] .side-b a").click()
    expect(page.get_by_role("heading", name=re.compile(r"Prompt 2\+3"))).to_be_visible()
    completions = page.locator(".completions tr.completion-row td")
    expect(completions).to_have_count(4)
    expect(completions.nth(0)).to_have_text("sample 0: 2+3 is 5")
    expect(completions.nth(3)).to_have_text("sample 3: 2+3 is 0")


def test_model_output_and_names_on_the_page_stay_text(page, user, project):
    evaluation = experiment_create(project=project, author=user, name=f"eval {PAYLOAD}"[:120],
                                   description="", config=RECIPE, kind="evaluation")
    # A model reference cannot carry markup (training.spec.model_refs): the names do.
    before = finished_job(evaluation, user, "org/model", {"1+2": [False]},
                          completion=PAYLOAD)
    after = finished_job(evaluation, user, "org/x", {"1+2": [True]})
    ingestion.rollouts_ingest(run_id=after.pk, step=0, items=[
        {"prompt": PAYLOAD, "prompt_id": PAYLOAD, "group": 9, "sample_index": 0,
         "completion": PAYLOAD, "reward": 1.0, "extra": {"answer": PAYLOAD, "correct": True}}])

    sign_in(page)
    page.goto(f"/projects/{project.pk}/evaluations/compare/?a={before.pk}&b={after.pk}")
    expect(page.locator("#only-b")).to_contain_text("window.__pwned")
    expect(page.locator("#pick-a option:checked")).to_contain_text("<script>")
    assert page.evaluate("window.__pwned") is None
