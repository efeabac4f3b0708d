"""Job templates in a real browser under the CSP: an admin writes a template with two
parameters; a member reaches it from the project page, launches it with a value out of bounds
(the reason beside the field, every value kept), then with valid values, and the run's page
shows the command it will run. No worker runs the script (tests/worker covers that)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import checked_page, sign_in
from tests.stack import start_web
from webapp.jobs.models import JobTemplate
from webapp.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PARAMETERS = [{"name": "lr", "type": "float", "default": 1e-5, "min": 0, "max": 0.01},
              {"name": "procs", "type": "int", "default": 1, "min": 1, "max": 4}]


@pytest.fixture
def site(transactional_db, tmp_path):
    web, base_url = start_web(tmp_path)
    yield base_url
    web.stop()


def test_an_admin_writes_a_template_and_a_member_launches_it(browser, site, team, project,
                                                              member_of):
    with checked_page(browser, site) as page:
        sign_in(page)
        page.goto(f"/teams/{team.pk}/")
        page.click("#job-templates-link a")
        page.click("#new-template")
        page.fill("#id_name", "accelerate GRPO")
        page.fill("#id_command", "accelerate launch --num_processes {procs} train.py "
                                 "--lr {lr} --output_dir {output_dir}")
        page.fill("#id_parameters", json.dumps(PARAMETERS))
        page.fill("#id_devices", "{procs}")
        page.click("#save-template")
        expect(page.locator("#template-parameters")).to_contain_text("procs")
    template = JobTemplate.objects.get(name="accelerate GRPO")

    member_of("member", "mia")
    with checked_page(browser, site) as page:
        sign_in(page, "mia", "correct-horse-9")
        page.goto(project.get_absolute_url())
        page.click("#launch-from-template")
        page.get_by_role("link", name="Launch…").click()
        expect(page.locator("#id_project")).to_have_value(str(project.pk))
        page.fill("#id_p-lr", "0.5")
        page.fill("#id_p-procs", "3")
        page.fill("#id_experiment_name", "lr probe")
        page.click("#launch")
        expect(page.locator("#id_p-lr-error")).to_contain_text("above the maximum, 0.01")
        expect(page.locator("#id_p-lr")).to_have_value("0.5")
        expect(page.locator("#id_p-procs")).to_have_value("3")
        expect(page.locator("#id_experiment_name")).to_have_value("lr probe")
        assert not Run.objects.exists()

        page.fill("#id_p-lr", "0.001")
        page.click("#launch")
        expect(page.locator("#run-command")).to_contain_text(
            "accelerate launch --num_processes 3 train.py --lr 0.001 --output_dir ")
        expect(page.locator("#run-template")).to_have_text(template.name)
        expect(page.locator("#run-parameters")).to_contain_text("procs")
    run = Run.objects.get()
    assert (run.experiment.name, run.devices, run.job_template) == ("lr probe", 3, template)
