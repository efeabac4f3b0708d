"""Script payloads stored everywhere a user or a model can put text, read back in a real browser:
every page shows them as text and nothing executes."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from webapp.api.tokens import token_create
from webapp.datasets.services import dataset_create
from webapp.experiments.services import experiment_create
from webapp.projects.services import project_create
from webapp.reviews import services as reviews
from webapp.runs import ingestion, services as runs
from webapp.runs.models import Rollout
from webapp.teams.services import team_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
PAYLOAD = f"x{SCRIPT}{IMG}"
SHORT = "<img src=x onerror=__pwned='l'>"  # fits a 40-character label


@pytest.fixture
def hostile_world(user, experiment):
    team = team_create(name=f"team {PAYLOAD}", user=user)
    project = project_create(team=team, name=f"project {PAYLOAD}", description=PAYLOAD,
                             user=user)
    config = dict(experiment.config)
    hostile = experiment_create(project=project, author=user, name=f"run {PAYLOAD}",
                                description=PAYLOAD, config=config)
    run = runs.run_launch(experiment=hostile, user=user)
    runs.run_claim(run_id=run.pk, worker=PAYLOAD)
    runs.run_fail(run_id=run.pk, error_message=PAYLOAD)
    ingestion.rollouts_ingest(run_id=run.pk, step=1, items=[
        {"prompt": PAYLOAD, "completion": PAYLOAD, "reward": 1.0, "rewards": {PAYLOAD: 1.0},
         "group": 0, "sample_index": 0, "prompt_id": PAYLOAD, "extra": {PAYLOAD: PAYLOAD},
         "tokens": {"text": [PAYLOAD, SHORT], "logprob": [-0.1, -2.0], "entropy": [0.2, 1.0]}}])
    ingestion.metrics_ingest(run_id=run.pk, points=[
        ingestion.MetricSample(key=key, step=1, value=1.0, wall_time=timezone.now())
        for key in (PAYLOAD, "eval/pass@1")])  # the second one: a leaderboard row
    ingestion.logs_append(run_id=run.pk, lines=[(timezone.now(), "info", "trainer", PAYLOAD)])
    rollout = Rollout.objects.get(run=run)
    reviews.label_create(team=team, name=SHORT)
    reviews.annotation_create(rollout=rollout, author=user, label=SHORT.lower(), note=PAYLOAD)
    reviews.comment_create(run=run, author=user, body=PAYLOAD)
    reviews.run_tag_add(run=run, actor=user, name=PAYLOAD)
    reviews.run_notes_set(run=run, actor=user, notes=PAYLOAD)
    token_create(user=user, name=f"token {PAYLOAD}")
    dataset = dataset_create(
        project=project, user=user, name=f"data {PAYLOAD}", kind="prompts",
        filename="hostile.jsonl", mapping={"prompt": PAYLOAD, "answer": "answer"},
        file=io.BytesIO(json.dumps({PAYLOAD: PAYLOAD, "answer": 1}).encode() + b"\n"))
    evaluation = experiment_create(
        project=project, author=user, name=f"eval {PAYLOAD}", description=PAYLOAD,
        config={"samples": 2, "pass_ks": "1, 2", "maj_ks": "2"}, kind="evaluation")
    # A model reference cannot carry markup (training.spec.model_refs): a hub id stands in.
    job = runs.evaluation_launch(experiment=evaluation, user=user, model="org/model")
    runs.run_claim(run_id=job.pk, worker=PAYLOAD)
    ingestion.rollouts_ingest(run_id=job.pk, step=0, items=[
        {"prompt": PAYLOAD, "completion": PAYLOAD, "reward": 0.0, "rewards": {"correct": 0.0},
         "group": 0, "sample_index": 0, "prompt_id": PAYLOAD,
         "extra": {"answer": PAYLOAD, "correct": False, "extracted_answer": PAYLOAD}}])
    ingestion.metrics_ingest(run_id=job.pk, points=[
        ingestion.MetricSample(key="eval/pass@1", step=0, value=0.0, wall_time=timezone.now())])
    runs.run_succeed(run_id=job.pk)
    return {"team": team, "project": project, "experiment": hostile, "run": run,
            "rollout": rollout, "dataset": dataset, "evaluation": evaluation, "job": job}


def test_stored_payloads_never_execute(page, hostile_world):
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page)

    world = hostile_world
    pages = [
        "/", "/teams/", f"/teams/{world['team'].pk}/", f"/projects/{world['project'].pk}/",
        f"/projects/{world['project'].pk}/review/", f"/projects/{world['project'].pk}/activity/",
        f"/experiments/{world['experiment'].pk}/", f"/experiments/{world['experiment'].pk}/edit/",
        f"/runs/{world['run'].pk}/", f"/rollouts/{world['rollout'].pk}/",
        f"/projects/{world['project'].pk}/datasets/", f"/datasets/{world['dataset'].pk}/",
        f"/projects/{world['project'].pk}/compare/?runs={world['run'].pk}",
        reverse("evaluations:leaderboard", args=[world["project"].pk]),
        f"/runs/{world['run'].pk}/rollouts/",
        f"/experiments/{world['evaluation'].pk}/", f"/runs/{world['job'].pk}/",
        reverse("rollouts:prompt_history", args=[world["run"].pk, PAYLOAD]),
        reverse("api_tokens:list"),
    ]
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        expect(page.locator("main")).to_contain_text(SCRIPT)
        assert page.evaluate("window.__pwned") is None, f"a payload ran on {path}"
        # json_script's data blocks (type application/json) never run; any other script would.
        injected = page.locator("main img[src=x], main script:not([type='application/json'])")
        assert injected.count() == 0, f"{path} rendered a payload as markup"
    run_page_title = f"run {PAYLOAD} #1 · rlab"
    page.goto(f"/runs/{world['run'].pk}/")
    assert page.title() == run_page_title
    expect(page.locator("figure.chart figcaption span:first-child")
           .filter(has_text="onerror")).to_have_text(PAYLOAD)
    assert dialogs == []
