"""The queue and workers pages, and the priority buttons, with and without htmx."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.webapp.queue.conftest import queued, running
from webapp.queue.services import worker_report
from webapp.runs.models import Run

pytestmark = pytest.mark.django_db

QUEUE = reverse("queue:queue")
HTMX = {"HTTP_HX_REQUEST": "true"}


def priority_url(run) -> str:
    return reverse("queue:priority", args=[run.pk])


def test_the_queue_page_lists_the_users_runs_in_claim_order_with_their_places(
        signed_in, experiment, user):
    later = queued(experiment, user, age=10, priority=2)
    earlier = queued(experiment, user, age=20)
    page = signed_in.get(QUEUE).content.decode()
    assert page.index(f'id="queued-{later.pk}" data-position="1"') < \
        page.index(f'id="queued-{earlier.pk}" data-position="2"')
    assert "Raise" in page and 'name="priority"' in page


def test_the_queue_page_never_names_another_teams_experiment(
        signed_in, experiment, other_experiment, user, other_user):
    queued(other_experiment, other_user)
    running(other_experiment, other_user)
    page = signed_in.get(QUEUE).content.decode()
    assert "secret-plan" not in page and "Secret project" not in page
    assert "1 queued run of other teams" in page
    assert "1 run of other teams running" in page


def test_a_viewer_sees_the_queue_without_priority_buttons(client, experiment, user, member_of):
    queued(experiment, user)
    client.force_login(member_of("viewer"))
    page = client.get(QUEUE).content.decode()
    assert "grpo-small #1" in page and "Raise" not in page


def test_raising_without_javascript_redirects_to_the_queue(signed_in, experiment, user):
    run = queued(experiment, user)
    response = signed_in.post(priority_url(run), {"step": "up"})
    assert response.status_code == 302 and response["Location"] == QUEUE
    assert Run.objects.get(pk=run.pk).priority == 1


def test_setting_an_exact_priority_with_htmx_returns_the_list(signed_in, experiment, user):
    run = queued(experiment, user)
    response = signed_in.post(priority_url(run), {"priority": "-7"}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert '<div id="queue-list">' in body and "<html" not in body
    assert Run.objects.get(pk=run.pk).priority == -7


@pytest.mark.parametrize("value, message", [
    ("high", "Enter a whole number."),
    ("1.5", "Enter a whole number."),
    ("5\x00", "Enter a whole number."),
    ("101", "less than or equal to 100"),
    ("-1000", "greater than or equal to -100"),
])
def test_a_bad_priority_is_refused_with_a_message(signed_in, experiment, user, value, message):
    run = queued(experiment, user)
    response = signed_in.post(priority_url(run), {"priority": value}, **HTMX)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert Run.objects.get(pk=run.pk).priority == 0


def test_raising_past_the_top_is_refused_without_javascript_as_a_message(
        signed_in, experiment, user):
    run = queued(experiment, user, priority=100)
    response = signed_in.post(priority_url(run), {"step": "up"}, follow=True)
    assert "between -100 and 100; 101 is not" in response.content.decode()
    assert Run.objects.get(pk=run.pk).priority == 100


def test_a_run_that_already_started_is_refused_with_a_clear_message(signed_in, experiment, user):
    run = running(experiment, user)
    response = signed_in.post(priority_url(run), {"step": "up"}, **HTMX)
    assert response.status_code == 422
    assert "is running, no longer queued" in response.content.decode()


def test_another_teams_run_is_404(signed_in, other_experiment, other_user):
    run = queued(other_experiment, other_user)
    assert signed_in.post(priority_url(run), {"step": "up"}).status_code == 404
    assert Run.objects.get(pk=run.pk).priority == 0


def test_a_member_may_not_raise_another_members_run(client, experiment, user, member_of):
    run = queued(experiment, user)
    client.force_login(member_of("member"))
    assert client.post(priority_url(run), {"step": "up"}).status_code == 403


def test_the_workers_page_shows_each_worker_and_escapes_its_name(signed_in, experiment, user):
    worker_report(name='<script>alert("w")</script>@evil', host="box-1", pid=4321,
                  queues=["cpu", "gpu"], device="cuda: NVIDIA H100", slots=2,
                  started_at=timezone.now())
    page = signed_in.get(reverse("queue:workers")).content.decode()
    assert '<script>alert("w")</script>' not in page
    assert "&lt;script&gt;alert(&quot;w&quot;)&lt;/script&gt;@evil" in page
    assert "box-1" in page and "cpu, gpu" in page and "cuda: NVIDIA H100" in page
    assert "4321" in page and "idle" in page


def test_the_pages_need_a_sign_in(client):
    for url in (QUEUE, reverse("queue:workers")):
        assert client.get(url).status_code == 302


def test_the_nav_links_to_the_queue_and_the_workers(signed_in):
    page = signed_in.get(reverse("projects:list")).content.decode()
    assert f'href="{QUEUE}"' in page and f'href="{reverse("queue:workers")}"' in page


def test_the_run_wait_tag_tells_why_a_queued_run_waits(experiment, user):
    from django.template import Context, Template

    run = queued(experiment, user, queue="gpu")
    html = Template("{% load queue %}{% run_wait run %}").render(Context({"run": run}))
    assert "No worker consumes queue gpu" in html
    run.status = "running"
    assert Template("{% load queue %}{% run_wait run %}").render(
        Context({"run": run})).strip() == ""
