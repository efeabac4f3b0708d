"""The rollout browser and the token view in a real browser: filters swap the results in place
and keep the URL, keys move through groups and pages, hovering a token reads out its values."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from webapp.runs import ingestion, services as runs
from webapp.runs.models import Rollout

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__pwned = 'script'</script><img src=x onerror=\"window.__pwned = 1\">"


@pytest.fixture
def run(user, experiment):
    """12 steps of two groups: group 0 mixed, group 1 degenerate; step 5's best completion
    scored 3 and was truncated; step 7 mentions a needle, and a script."""
    run = runs.run_launch(experiment=experiment, user=user)
    for step in range(1, 13):
        items = []
        for group, rewards in ((0, [1.0, 0.0]), (1, [0.5, 0.5])):
            for i, reward in enumerate(rewards):
                best = step == 5 and group == 0 and i == 0
                text = f"step {step} group {group} sample {i}"
                if step == 7 and group == 1:
                    text += f" needle {SCRIPT}"
                items.append({"prompt": f"Compute {step} + {group}.",
                              "prompt_id": f"{step}+{group}", "completion": text, "reward": 3.0 if best else reward,
                              "group": group, "sample_index": i, "truncated": best,
                              "advantage": 0.0, "completion_tokens": 5})
        ingestion.rollouts_ingest(run_id=run.pk, step=step, items=items)
    return run


def _groups(page) -> list[str]:
    return page.locator("#rollout-results .rollout-group").evaluate_all(
        "groups => groups.map(g => g.id)")


def test_rollout_filters_work(page, run):
    sign_in(page)
    page.goto(f"/runs/{run.pk}/rollouts/")
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(10)
    assert _groups(page)[:3] == ["group-12-0", "group-12-1", "group-11-0"]
    page.evaluate("window.__notReloaded = true")  # gone if a filter reloaded the page

    page.fill("#id_step_min", "3")
    page.fill("#id_step_max", "4")
    page.press("#id_step_max", "Enter")
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(4)
    expect(page).to_have_url(re.compile(r"step_min=3&step_max=4"))

    page.fill("#id_step_min", "")
    page.fill("#id_step_max", "")
    page.select_option("#id_sort", "-reward")  # a change applies at once
    expect(page.locator("#rollout-results .rollout-group").first).to_have_id("group-5-0")
    expect(page).to_have_url(re.compile(r"sort=-reward"))

    page.select_option("#id_truncated", "yes")
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(1)
    page.select_option("#id_truncated", "")
    page.select_option("#id_degenerate", "yes")
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(10)
    assert all(g.endswith("-1") for g in _groups(page))

    page.fill("#id_q", "NEEDLE")  # searched as you type
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(1)
    expect(page.locator("#group-7-1")).to_contain_text("needle <script>")
    expect(page).to_have_url(re.compile(r"q=NEEDLE"))

    # Each applied filter is a step of the address history. Leaving a field applies it (a
    # change event), so the first reward is applied, and waited for, on its own.
    page.fill("#id_reward_min", "2")
    page.press("#id_reward_min", "Enter")
    expect(page).to_have_url(re.compile(r"reward_min=2"))
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(0)
    page.fill("#id_reward_max", "1")
    page.press("#id_reward_max", "Enter")
    expect(page.locator("#filter-errors")).to_contain_text(
        "The last reward must not be below the first.")
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(0)

    assert page.evaluate("window.__notReloaded") is True
    assert page.evaluate("window.__pwned") is None
    page.go_back()  # the previous filters, from the address history
    expect(page.locator("#filter-errors")).to_have_count(0)
    expect(page).not_to_have_url(re.compile(r"reward_max=1"))
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"reward_min=2"))
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(1)


def test_keys_move_through_groups_and_pages(page, run):
    sign_in(page)
    page.goto(f"/runs/{run.pk}/rollouts/")
    selected = page.locator("#rollout-results .rollout-group.selected")
    expect(selected).to_have_count(0)
    page.keyboard.press("j")
    expect(selected).to_have_id("group-12-0")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(selected).to_have_id("group-11-0")
    page.keyboard.press("k")
    expect(selected).to_have_id("group-12-1")

    page.keyboard.press("n")
    expect(page).to_have_url(re.compile(r"after="))
    expect(selected).to_have_id("group-7-0")
    expect(page.locator("#rollout-results .rollout-group")).to_have_count(10)
    page.keyboard.press("p")
    expect(selected).to_have_id("group-8-1")  # back on page one, at its last group
    expect(page.locator("#rollout-results .rollout-group").first).to_have_id("group-12-0")

    page.click("#id_q")  # typing is not navigating
    page.keyboard.type("jn")
    expect(page.locator("#id_q")).to_have_value("jn")
    expect(selected).to_have_id("group-8-1")


def test_token_hover_shows_values(page, run):
    rollout = Rollout.objects.filter(run=run).order_by("pk").first()
    rollout.token_data = {"text": ["The", " answer", SCRIPT], "logprob": [-0.01, -2.5, -0.2],
                          "entropy": [0.1, 1.5, 0.3], "advantage": [0.8, 0.8, 0.8]}
    rollout.save(update_fields=["token_data"])
    sign_in(page)
    page.goto(f"/rollouts/{rollout.pk}/")
    tokens = page.locator("#token-view .tok")
    expect(tokens).to_have_count(3)
    expect(tokens.nth(1)).to_have_class("tok shade-4")  # p = 0.08: unlikely

    tokens.nth(1).hover()
    readout = page.locator("#token-readout")
    expect(readout).to_contain_text("␣answer")
    expect(readout).to_contain_text("log-prob -2.5000 (p = 0.0821)")
    expect(readout).to_contain_text("entropy 1.5000")
    expect(readout).to_contain_text("advantage 0.8000")
    tokens.nth(2).hover()
    expect(readout).to_contain_text("<script>window.__pwned")  # model text shown as text

    page.select_option("#token-colour", "entropy")
    expect(tokens.nth(1)).to_have_class("tok shade-3")  # 1.5 nats
    expect(tokens.nth(0)).to_have_class("tok shade-0")
    expect(page.locator('.token-legend[data-quantity="entropy"]')).to_be_visible()
    expect(page.locator('.token-legend[data-quantity="logprob"]')).to_be_hidden()
    expect(page).to_have_url(re.compile(r"colour=entropy"))
    page.select_option("#token-colour", "advantage")
    expect(tokens.nth(0)).to_have_class("tok adv-pos-2")
    assert page.evaluate("window.__pwned") is None

    page.reload()  # the chosen colouring is in the URL, so the server draws it too
    expect(page.locator("#token-view .tok").nth(0)).to_have_class("tok adv-pos-2")


def test_an_algorithms_token_values_recolour_and_read_out(page, run):
    # GTPO's conflict tokens, PRL's process term and KDRL's KL to the teacher, as a run of each
    # records them; teacher_kl's underscore must survive the data attribute's name.
    rollout = Rollout.objects.filter(run=run).order_by("pk").first()
    rollout.token_data = {"text": ["a", "b"], "logprob": [-0.1, -0.2],
                          "conflict": [1.0, 0.0], "process": [-0.5, 0.0],
                          "teacher_kl": [0.01, 0.7]}
    rollout.save(update_fields=["token_data"])
    sign_in(page)
    page.goto(f"/rollouts/{rollout.pk}/")
    tokens = page.locator("#token-view .tok")
    page.select_option("#token-colour", "conflict")
    expect(tokens.nth(0)).to_have_class("tok conflict")
    expect(tokens.nth(1)).to_have_class("tok shade-0")
    page.select_option("#token-colour", "teacher_kl")
    expect(tokens.nth(1)).to_have_class("tok shade-4")  # 0.7 ≥ 0.5
    page.select_option("#token-colour", "process")
    expect(tokens.nth(0)).to_have_class("tok adv-neg-3")
    tokens.nth(1).hover()
    readout = page.locator("#token-readout")
    expect(readout).to_contain_text("GTPO conflict 0.0000")
    expect(readout).to_contain_text("KL to teacher 0.7000")
    expect(readout).to_contain_text("PRL process 0.0000")
