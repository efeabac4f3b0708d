"""The experiment form in a real browser: settings by section, and only the chosen algorithm's
own (htmx swaps them when the algorithm changes; without JavaScript every algorithm's show)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from webapp.experiments.models import Experiment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _new_experiment(page, project) -> None:
    page.goto(f"/projects/{project.pk}/experiments/new/")
    expect(page.get_by_role("heading", name="New experiment")).to_be_visible()


def test_choosing_an_algorithm_swaps_in_its_own_settings(page, user, project):
    sign_in(page)
    _new_experiment(page, project)
    for legend in ("Model", "Rollouts", "Algorithm", "KL and reference", "Checkpoints"):
        expect(page.locator("fieldset.section legend", has_text=legend)).to_have_count(1)
    expect(page.locator("#algorithm-settings #id_scale_rewards")).to_be_visible()  # GRPO's
    expect(page.locator("#id_gae_lambda")).to_have_count(0)
    page.select_option("#id_algorithm", "ppo")
    expect(page.locator("#algorithm-settings #id_gae_lambda")).to_be_visible()
    expect(page.locator("#id_scale_rewards")).to_have_count(0)
    page.fill("#id_name", "ppo-lambda")
    page.fill("#id_gae_lambda", "0.9")
    page.select_option("#id_algorithm", "spo")  # and back: the swap keeps the page working
    expect(page.locator("#algorithm-settings #id_spo_half_life")).to_be_visible()
    page.select_option("#id_algorithm", "ppo")
    page.fill("#id_gae_lambda", "0.9")
    page.click("#experiment-form button[type=submit]")
    expect(page.get_by_role("heading", name="ppo-lambda")).to_be_visible()
    config = Experiment.objects.get(name="ppo-lambda").config
    assert config["algorithm"] == "ppo" and config["gae_lambda"] == 0.9
    assert "spo_half_life" not in config and "scale_rewards" not in config


def test_without_javascript_every_algorithms_settings_show_and_the_chosen_ones_save(
        browser, stack, user, project):
    context = browser.new_context(base_url=stack, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page)
        _new_experiment(page, project)
        for name in ("scale_rewards", "gae_lambda", "spo_half_life", "dpo_beta"):
            expect(page.locator(f"#id_{name}")).to_be_visible()
        page.fill("#id_name", "spo-no-js")
        page.select_option("#id_algorithm", "spo")
        page.fill("#id_group_size", "1")
        page.fill("#id_spo_half_life", "0.5")
        page.fill("#id_gae_lambda", "7")  # out of bounds, but PPO's: ignored for an SPO run
        page.click("#experiment-form button[type=submit]")
        expect(page.get_by_role("heading", name="spo-no-js")).to_be_visible()
        config = Experiment.objects.get(name="spo-no-js").config
        assert config["algorithm"] == "spo" and config["spo_half_life"] == 0.5
        assert "gae_lambda" not in config
    finally:
        context.close()
