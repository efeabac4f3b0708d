"""The evaluation path a user travels, through the real worker: a training run that evaluates as
it trains charts its eval/ curves; an evaluation defined through the form (a wrong k refused
first) evaluates that run's final checkpoint from the run page; the job's page fills in its
results live; its samples can be browsed; the leaderboard lists the job and the periodic rows."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.conftest import tiny_run_config
from webapp.experiments.models import Experiment, ExperimentKind
from webapp.experiments.services import experiment_create
from webapp.runs.services import run_launch

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROMPTS, SAMPLES = 3, 2  # per evaluation, periodic and job alike: a few seconds on the tiny model


def _define_evaluation(page, project) -> None:
    """Through the project page's form: once with k larger than n (refused, nothing saved),
    then right."""
    page.goto(project.get_absolute_url())
    page.click("#new-evaluation")
    expect(page.get_by_role("heading", name="New evaluation")).to_be_visible()
    page.fill("#id_name", "held-out sums")
    page.fill("#id_samples", str(SAMPLES))
    page.fill("#id_pass_ks", "1, 4")  # 4 > n
    page.fill("#id_maj_ks", "2")
    page.fill("#id_max_new_tokens", "4")
    page.fill("#id_max_prompts", str(PROMPTS))
    page.locator("#section-rollout summary").click()  # the folded rollout settings
    page.select_option("#id_rollout_backend", "transformers")  # no engine start-up to wait for
    page.click("#experiment-form button[type=submit]")
    expect(page.locator("#id_pass_ks-error")).to_contain_text(
        f"k = 4 is more than the {SAMPLES} samples per prompt")
    expect(page.locator("#experiment-form")).to_contain_text("nothing was saved")
    expect(page.locator("#id_name")).to_have_value("held-out sums")
    assert not Experiment.objects.filter(kind=ExperimentKind.EVALUATION).exists()

    page.fill("#id_pass_ks", "1, 2")
    page.click("#experiment-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("held-out sums")
    expect(page.locator("h1 .badge")).to_have_text("evaluation")
    evaluation = Experiment.objects.get(kind=ExperimentKind.EVALUATION)
    assert (evaluation.config["samples"], evaluation.config["pass_ks"],
            evaluation.config["maj_ks"]) == (SAMPLES, "1, 2", "2")
    expect(page).to_have_url(re.compile(rf"{evaluation.get_absolute_url()}$"))


def test_evaluate_a_checkpoint_and_read_the_results(page, user, project, tiny_model):
    # Launched by a service call so that it trains while the browser defines the evaluation.
    training = experiment_create(
        project=project, author=user, name="evaluated", description="",
        config=tiny_run_config(tiny_model, max_steps=2, eval_every=2, eval_prompts=PROMPTS,
                               eval_samples=SAMPLES))
    run = run_launch(experiment=training, user=user)

    sign_in(page)
    _define_evaluation(page, project)

    page.goto(run.get_absolute_url())
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#run-progress")).to_have_text("step 2 / 2")
    for key in ("eval/pass@1", f"eval/pass@{SAMPLES}", f"eval/maj@{SAMPLES}",
                f"eval/avg@{SAMPLES}"):
        figure = page.locator(f"#charts section.chart-panel[data-panel='{key}'] "
                              f"figure.chart[data-key='{key}']")
        expect(figure.locator("figcaption .chart-title")).to_have_text(key)
        expect(figure.locator("canvas").first).to_be_visible()

    final = page.locator("#checkpoints tbody tr", has=page.locator(".tag", has_text="final"))
    expect(final.locator("td").first).to_have_text(re.compile(r"^2\s+final$"))
    final.locator("select[name=evaluation]").select_option(label="held-out sums")
    final.locator("button.evaluate-checkpoint").click()

    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("h1 .badge")).to_have_text("evaluation job")
    expect(page.locator("#evaluated-model")).to_contain_text(f"evaluated #{run.number}")
    expect(page.locator("#evaluated-model")).to_contain_text("at step 2")
    # Rendered while the job was still to run, so what follows arrives over the event stream.
    expect(page.locator("#run-stream")).to_have_attribute("sse-connect", re.compile("events"))
    page.evaluate("window.__notReloaded = true")

    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#run-progress")).to_have_text(f"{PROMPTS} / {PROMPTS} prompts")
    results = page.locator("#evaluation-results")
    for name in ("pass@1", f"pass@{SAMPLES}", f"maj@{SAMPLES}", f"avg@{SAMPLES}"):
        value = results.locator("div", has=page.get_by_text(name, exact=True)).locator("dd")
        expect(value).to_have_text(re.compile(r"^(0\.\d{3}|1\.000)$"))  # a rate
    expect(page.locator("#rollouts tbody tr")).to_have_count(PROMPTS * SAMPLES)
    expect(page.locator("#run-stream")).to_have_attribute("data-stream-closed", "true")
    assert page.evaluate("window.__notReloaded") is True, "the job's page reloaded"

    page.click("#browse-rollouts")
    expect(page.locator("h1")).to_contain_text("Rollouts")
    groups = page.locator("#rollout-results .rollout-group")
    expect(groups).to_have_count(PROMPTS)
    expect(groups.first.locator(".completion-row td")).to_have_count(SAMPLES)
    expect(groups.first.locator("h2")).to_contain_text("Step 2")

    page.goto(project.get_absolute_url())
    page.click("#leaderboard-link")
    expect(page.get_by_role("heading", name="Leaderboard")).to_be_visible()
    rows = page.locator("#leaderboard-table tr.result-row")
    expect(rows).to_have_count(3)
    job = page.locator("#leaderboard-table tr.result-row.source-job")
    expect(job).to_have_count(1)
    expect(job.locator("td.model")).to_have_text(f"evaluated #{run.number} · step 2")
    expect(job).to_contain_text(f"{PROMPTS} × {SAMPLES}")
    periodic = page.locator("#leaderboard-table tr.result-row.source-training td.model")
    expect(periodic).to_have_count(2)
    assert sorted(periodic.all_inner_texts()) == [f"evaluated #{run.number} · step {step}"
                                                  for step in (0, 2)]
