"""The prompt history: one prompt's completions and rewards at every step it was sampled."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from webapp.rollouts.prompt_history import PROMPT_HISTORY_COMPLETIONS, PROMPT_HISTORY_STEPS
from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.services import run_launch

pytestmark = pytest.mark.django_db

PAYLOAD = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def run(experiment, user):
    return run_launch(experiment=experiment, user=user)


def sample(run, step: int, prompt_id: str, rewards: list[float], *, group: int = 0,
           prompt: str = "Compute 3 + 4.") -> None:
    rollouts_ingest(run_id=run.pk, step=step, items=[
        {"prompt": prompt, "prompt_id": prompt_id, "completion": f"answer {step}.{i}",
         "reward": reward, "rewards": {"correct": reward}, "advantage": reward - 0.5,
         "group": group, "sample_index": i, "completion_tokens": 4}
        for i, reward in enumerate(rewards)])


def history(client, run, prompt_id: str, **params):
    return client.get(reverse("rollouts:prompt_history", args=[run.pk, prompt_id]), params)


def steps_shown(response) -> list[int]:
    assert response.status_code == 200
    return [int(s) for s in re.findall(r'<article class="card history-step" id="step-(\d+)"',
                                       response.content.decode())]


def link(response, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="[^"?]*\?([^"]+)"', response.content.decode())
    return found.group(1).replace("&amp;", "&") if found else None


def test_shows_each_step_it_was_sampled_oldest_first_with_rewards(signed_in, run):
    sample(run, 7, "3+4", [1.0, 1.0])
    sample(run, 2, "3+4", [0.0, 1.0])
    sample(run, 4, "5+5", [1.0, 0.0])  # another prompt
    response = history(signed_in, run, "3+4")
    body = response.content.decode()
    assert steps_shown(response) == [2, 7]
    assert "Compute 3 + 4." in body
    assert "answer 2.0" in body and "answer 7.1" in body and "answer 4.0" not in body
    assert re.search(r'id="step-2".*?mean reward <b class="mono">0.500</b>', body, re.S)
    assert re.search(r'id="step-7".*?mean reward <b class="mono">1.000</b>', body, re.S)
    assert re.search(r'<th scope="row">advantage</th><td class="mono">-0.500</td>', body)


def test_a_prompt_sampled_twice_in_a_step_shows_both_groups(signed_in, run):
    sample(run, 3, "3+4", [1.0, 0.0], group=0)
    sample(run, 3, "3+4", [0.0, 0.0], group=5)
    body = history(signed_in, run, "3+4").content.decode()
    assert re.findall(r">(\d+\.\d+)</a>", body) == ["0.0", "0.1", "5.0", "5.1"]
    assert "mean reward <b class=\"mono\">0.250</b> over 4" in body


def test_the_chart_has_the_mean_reward_of_every_step(signed_in, run):
    for step, rewards in [(1, [0.0, 0.0]), (2, [0.0, 1.0]), (3, [1.0, 1.0])]:
        sample(run, step, "3+4", rewards)
    body = history(signed_in, run, "3+4").content.decode()
    assert '<svg class="history-chart"' in body
    assert re.search(r'<polyline class="history-line" points="[\d., ]+"/>', body)
    for text in ("step 1: 0.000 over 2 completions", "step 2: 0.500 over 2 completions",
                 "step 3: 1.000 over 2 completions"):
        assert f"<title>{text}</title>" in body


@pytest.mark.parametrize("prompt_id", ["#12", "3+4", "a/b c", "50% off? #1", "two\nlines"])
def test_any_prompt_id_makes_a_working_link(signed_in, run, prompt_id):
    sample(run, 1, prompt_id, [1.0, 0.0])
    sample(run, 1, "other", [0.0, 0.0], group=1)
    assert steps_shown(history(signed_in, run, prompt_id)) == [1]
    browser = signed_in.get(reverse("rollouts:browser", args=[run.pk])).content.decode()
    assert reverse("rollouts:prompt_history", args=[run.pk, prompt_id]) in browser


def test_a_prompt_the_run_never_sampled_is_404(signed_in, run):
    sample(run, 1, "3+4", [1.0])
    assert history(signed_in, run, "4+3").status_code == 404


def test_pages_by_steps_both_ways(signed_in, run):
    total = PROMPT_HISTORY_STEPS + 5
    for step in range(1, total + 1):
        sample(run, step, "3+4", [1.0])
    first = history(signed_in, run, "3+4")
    assert steps_shown(first) == list(range(1, PROMPT_HISTORY_STEPS + 1))
    assert link(first, "prev") is None
    second = signed_in.get(reverse("rollouts:prompt_history", args=[run.pk, "3+4"]) + "?" +
                           link(first, "next"))
    assert steps_shown(second) == list(range(PROMPT_HISTORY_STEPS + 1, total + 1))
    assert link(second, "next") is None
    back = signed_in.get(reverse("rollouts:prompt_history", args=[run.pk, "3+4"]) + "?" +
                         link(second, "prev"))
    assert steps_shown(back) == steps_shown(first)


def test_a_page_stops_short_of_too_many_completions(signed_in, run):
    per_step = PROMPT_HISTORY_COMPLETIONS // 3 + 1  # three steps would pass the cap
    for step in (1, 2, 3, 4):
        for group in range(per_step // 2 + 1):
            sample(run, step, "3+4", [1.0, 0.0], group=group)
    first = history(signed_in, run, "3+4")
    assert steps_shown(first) == [1, 2]
    assert steps_shown(history(signed_in, run, "3+4", after=2)) == [3, 4]


def test_htmx_gets_the_steps_partial(signed_in, run):
    sample(run, 1, "3+4", [1.0])
    response = signed_in.get(reverse("rollouts:prompt_history", args=[run.pk, "3+4"]),
                             HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="history-steps">')
    assert "<html" not in body and "history-chart" not in body
    assert "HX-Request" in response["Vary"]


def test_bad_step_cursors_are_ignored(signed_in, run):
    sample(run, 1, "3+4", [1.0])
    assert steps_shown(history(signed_in, run, "3+4", after="soon")) == [1]
    assert steps_shown(history(signed_in, run, "3+4", before=str(10**30))) == [1]


def test_model_text_is_escaped(signed_in, run):
    sample(run, 1, PAYLOAD, [1.0], prompt=PAYLOAD)
    body = history(signed_in, run, PAYLOAD).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;" in body


def test_outsiders_get_404(client, run, other_user):
    sample(run, 1, "3+4", [1.0])
    url = reverse("rollouts:prompt_history", args=[run.pk, "3+4"])
    assert client.get(url).status_code == 302
    client.force_login(other_user)
    assert client.get(url).status_code == 404
