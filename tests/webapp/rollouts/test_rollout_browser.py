"""The rollout browser (every filter and sort, pagination, bad input, htmx), the degeneracy flag
it filters on, and the token view on the rollout page."""

from __future__ import annotations

import doctest
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

import webapp.rollouts.rollout_browser
from webapp.rollouts.rollout_browser import PAGE_GROUPS
from webapp.runs.ingestion import rollouts_ingest
from webapp.runs.models import Rollout
from webapp.runs.services import run_launch

pytestmark = pytest.mark.django_db

PAYLOAD = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def run(experiment, user):
    return run_launch(experiment=experiment, user=user)


def add_group(run, step: int, group: int, scores: list[float], **columns) -> None:
    """One group of completions with these rewards; `columns` gives per-completion lists
    (completion, advantage, completion_tokens, truncated, rewards) or one value for all
    (prompt, prompt_id, group_degenerate)."""
    items = []
    for i, reward in enumerate(scores):
        item = {"prompt": f"Compute {step} + {group}.", "prompt_id": f"{step}+{group}",
                "completion": f"step {step} group {group} sample {i}", "reward": reward,
                "rewards": {"correct": reward}, "group": group, "sample_index": i,
                "advantage": reward - sum(scores) / len(scores), "completion_tokens": 10 + i}
        for key, value in columns.items():
            item[key] = value[i] if isinstance(value, list) else value
        items.append(item)
    rollouts_ingest(run_id=run.pk, step=step, items=items)


def browse(client, run, **params):
    return client.get(reverse("rollouts:browser", args=[run.pk]), params)


def listed(response) -> list[tuple[int, int]]:
    """The (step, group) of each group on the page, in order."""
    assert response.status_code == 200, response.content.decode()[:500]
    return [(int(s), int(g)) for s, g in
            re.findall(r'id="group-(\d+)-(\d+)"', response.content.decode())]


def columns(response, step: int, group: int) -> list[str]:
    """The sample labels of one group's columns, in order, "~" marking the dimmed ones."""
    body = response.content.decode()
    article = body[body.index(f'id="group-{step}-{group}"'):]
    article = article[:article.index("</article>")]
    head = article[article.index("<thead>"):article.index("</thead>")]
    return [("~" if "nomatch" in cls else "") + label for cls, label in
            re.findall(r'<th scope="col" class="([^"]*)"><a [^>]*>(\d+\.\d+)</a>', head)]


def next_cursor(response, key: str = "after") -> str | None:
    link = re.search(r'class="%s-page" rel="\w+" href="([^"]+)"' %
                     ("next" if key == "after" else "prev"), response.content.decode())
    if not link:
        return None
    return parse_qs(urlsplit(link.group(1).replace("&amp;", "&")).query)[key][0]


@pytest.fixture
def three_steps(run):
    for step in (1, 2, 3):
        add_group(run, step, 0, [1.0, 0.0])
        add_group(run, step, 1, [0.0, 0.0])
    return run


def test_page_lists_groups_newest_step_first(signed_in, three_steps):
    response = browse(signed_in, three_steps)
    assert listed(response) == [(3, 0), (3, 1), (2, 0), (2, 1), (1, 0), (1, 1)]
    assert 'id="rollout-filters"' in response.content.decode()


def test_oldest_step_first(signed_in, three_steps):
    assert listed(browse(signed_in, three_steps, sort="step")) == [
        (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]


def test_a_group_shows_its_completions_side_by_side_with_their_values(signed_in, run):
    add_group(run, 5, 0, [1.0, 0.0], truncated=[False, True],
              completion=["3 + 4 = 7", "three plus four"], rewards=[
                  {"correct": 1.0, "format": 0.5}, {"correct": 0.0, "format": 0.0}])
    response = browse(signed_in, run)
    body = response.content.decode()
    assert columns(response, 5, 0) == ["0.0", "0.1"]
    assert "3 + 4 = 7" in body and "three plus four" in body
    assert re.search(r'<th scope="row" class="mono">format</th><td class="mono">0.500</td>'
                     r'<td class="mono">0.000</td>', body)
    assert re.search(r'<th scope="row">advantage</th><td class="mono">0.500</td>'
                     r'<td class="mono">-0.500</td>', body)
    assert re.search(r'<th scope="row">length</th><td class="mono">10</td>'
                     r'<td class="mono">11 <span class="tag"[^>]*>truncated</span>', body)
    rollout = Rollout.objects.get(run=run, sample_index=1)
    assert reverse("reviews:rollout", args=[rollout.pk]) in body
    assert reverse("rollouts:prompt_history", args=[run.pk, "5+0"]) in body


def test_a_partly_logged_group_says_how_much_of_it_is_shown(signed_in, run):
    add_group(run, 1, 0, [1.0], group_degenerate=False)  # the experiment's groups hold 2
    assert "1 of 2 logged" in browse(signed_in, run).content.decode()


def test_pages_hold_ten_groups_and_link_both_ways(signed_in, run):
    for step in range(1, 13):
        add_group(run, step, 0, [1.0, 0.0])
    first = browse(signed_in, run)
    assert listed(first) == [(s, 0) for s in range(12, 2, -1)]
    assert 'class="prev-page"' not in first.content.decode()
    second = browse(signed_in, run, after=next_cursor(first))
    assert listed(second) == [(2, 0), (1, 0)]
    assert 'class="next-page"' not in second.content.decode()
    back = browse(signed_in, run, before=next_cursor(second, "before"))
    assert listed(back) == listed(first)


def test_step_range_filter(signed_in, three_steps):
    assert listed(browse(signed_in, three_steps, step_min=2, step_max=2)) == [(2, 0), (2, 1)]
    assert listed(browse(signed_in, three_steps, step_min=3)) == [(3, 0), (3, 1)]
    assert listed(browse(signed_in, three_steps, step_max=1)) == [(1, 0), (1, 1)]


def test_reward_range_lists_groups_with_a_match_and_dims_the_other_completions(signed_in, run):
    add_group(run, 1, 0, [0.0, 1.0])
    add_group(run, 1, 1, [0.0, 0.0])
    response = browse(signed_in, run, reward_min=0.5)
    assert listed(response) == [(1, 0)]
    assert columns(response, 1, 0) == ["0.1", "~0.0"]  # the match first
    assert listed(browse(signed_in, run, reward_max=0.5)) == [(1, 0), (1, 1)]
    assert listed(browse(signed_in, run, reward_min=0.2, reward_max=0.8)) == []


def test_degenerate_filter(signed_in, three_steps):
    assert listed(browse(signed_in, three_steps, degenerate="yes")) == [(3, 1), (2, 1), (1, 1)]
    assert listed(browse(signed_in, three_steps, degenerate="no")) == [(3, 0), (2, 0), (1, 0)]
    assert 'class="tag degenerate"' in browse(signed_in, three_steps, degenerate="yes").content \
        .decode()


def test_truncated_filter(signed_in, run):
    add_group(run, 1, 0, [1.0, 0.0], truncated=[False, True])
    add_group(run, 1, 1, [1.0, 0.0])
    response = browse(signed_in, run, truncated="yes")
    assert listed(response) == [(1, 0)]
    assert columns(response, 1, 0) == ["0.1", "~0.0"]
    assert listed(browse(signed_in, run, truncated="no")) == [(1, 0), (1, 1)]


def test_text_search_finds_prompts_and_completions_in_any_case(signed_in, run):
    add_group(run, 1, 0, [1.0, 0.0], completion=["The answer is 7", "I think 8"])
    add_group(run, 1, 1, [1.0, 0.0], prompt="What is SEVEN plus one?")
    response = browse(signed_in, run, q="answer IS")
    assert listed(response) == [(1, 0)]
    assert columns(response, 1, 0) == ["0.0", "~0.1"]
    assert listed(browse(signed_in, run, q="seven")) == [(1, 1)]
    assert listed(browse(signed_in, run, q="100%_")) == []  # LIKE wildcards are plain text


def test_filters_combine(signed_in, run):
    add_group(run, 1, 0, [1.0, 0.0], truncated=[True, True])
    add_group(run, 2, 0, [1.0, 0.0], truncated=[False, True])  # the truncated one scored 0
    add_group(run, 3, 0, [1.0, 1.0], truncated=[True, True])  # degenerate
    add_group(run, 4, 0, [1.0, 0.0], truncated=[True, True])
    wanted = {"truncated": "yes", "reward_min": 1, "degenerate": "no"}
    assert listed(browse(signed_in, run, **wanted)) == [(4, 0), (1, 0)]
    assert listed(browse(signed_in, run, **wanted, step_max=3)) == [(1, 0)]
    assert listed(browse(signed_in, run, **wanted, q="step 4 group")) == [(4, 0)]


@pytest.fixture
def spread(run):
    """Four groups whose best and worst completions differ in reward, advantage and length."""
    add_group(run, 1, 0, [0.2, 0.9], advantage=[0.1, -2.0], completion_tokens=[5, 50])
    add_group(run, 1, 1, [0.5, 0.1], advantage=[1.5, 0.0], completion_tokens=[30, 8])
    add_group(run, 2, 0, [0.6, 0.3], advantage=[0.2, 0.3], completion_tokens=[20, 21])
    add_group(run, 2, 1, [0.0, 0.0], advantage=[-1.0, 2.5], completion_tokens=[3, 40])
    return run


@pytest.mark.parametrize("sort, expected", [
    ("-reward", [(1, 0), (2, 0), (1, 1), (2, 1)]),      # best: 0.9, 0.6, 0.5, 0.0
    ("reward", [(2, 1), (1, 1), (1, 0), (2, 0)]),       # lowest: 0.0, 0.1, 0.2, 0.3
    ("-advantage", [(2, 1), (1, 1), (2, 0), (1, 0)]),   # 2.5, 1.5, 0.3, 0.1
    ("advantage", [(1, 0), (2, 1), (1, 1), (2, 0)]),    # -2.0, -1.0, 0.0, 0.2
    ("-length", [(1, 0), (2, 1), (1, 1), (2, 0)]),      # 50, 40, 30, 21
    ("length", [(2, 1), (1, 0), (1, 1), (2, 0)]),       # 3, 5, 8, 20
])
def test_sort_places_each_group_by_its_best_completion(signed_in, spread, sort, expected):
    assert listed(browse(signed_in, spread, sort=sort)) == expected


def test_sort_orders_completions_within_a_group_by_the_same_key(signed_in, spread):
    response = browse(signed_in, spread, sort="-reward")
    assert columns(response, 1, 0) == ["0.1", "0.0"]
    assert columns(browse(signed_in, spread, sort="length"), 1, 1) == ["1.1", "1.0"]


def test_sort_ties_go_to_the_newest_step_then_the_lower_group(signed_in, run):
    for step in (1, 2):
        for group in (0, 1):
            add_group(run, step, group, [1.0, 0.0])
    expected = [(2, 0), (2, 1), (1, 0), (1, 1)]
    assert listed(browse(signed_in, run, sort="-reward")) == expected
    assert listed(browse(signed_in, run, sort="reward")) == expected


def test_a_sort_by_advantage_leaves_out_groups_without_one(signed_in, run):
    add_group(run, 1, 0, [1.0, 0.0], advantage=[None, None])
    add_group(run, 1, 1, [1.0, 0.0], advantage=[None, 0.5])
    response = browse(signed_in, run, sort="-advantage")
    assert listed(response) == [(1, 1)]
    assert columns(response, 1, 1) == ["1.1", "1.0"]  # no value: last


@pytest.mark.parametrize("sort", ["-step", "step", "-reward", "reward", "-advantage",
                                  "advantage", "-length", "length"])
def test_paging_through_any_order_shows_every_group_once(signed_in, run, sort):
    # Few distinct values, so most groups tie and the cursor has to break ties by step, group.
    for step in range(1, 8):
        for group in range(4):
            add_group(run, step, group, [float((step + group) % 2), float(group % 3 == 0)],
                      advantage=[float(group % 2), -1.0], completion_tokens=[step % 3, 9])
    first = browse(signed_in, run, sort=sort, reward_max=5)
    pages, cursor = [listed(first)], next_cursor(first)
    while cursor:
        response = browse(signed_in, run, sort=sort, reward_max=5, after=cursor)
        pages.append(listed(response))
        cursor = next_cursor(response)
    seen = [key for page in pages for key in page]
    assert sorted(seen) == sorted((s, g) for s in range(1, 8) for g in range(4))
    assert [len(page) for page in pages] == [PAGE_GROUPS, PAGE_GROUPS, 28 - 2 * PAGE_GROUPS]
    # And back again from the last page.
    backwards, cursor = [pages[-1]], next_cursor(response, "before")
    while cursor:
        page = browse(signed_in, run, sort=sort, reward_max=5, before=cursor)
        backwards.insert(0, listed(page))
        cursor = next_cursor(page, "before")
    assert backwards == pages


@pytest.mark.parametrize("params, message", [
    ({"step_min": "abc"}, "Steps from: Enter a whole number."),
    ({"step_min": 5, "step_max": 2}, "Steps to: The last step must not be below the first."),
    ({"reward_min": 1, "reward_max": 0},
     "Reward to: The last reward must not be below the first."),
    ({"reward_min": "nan"}, "Reward from: Enter a number."),
    ({"step_max": 10**30}, "Steps to: Ensure this value is less than or equal to"),
    ({"sort": "-prompt"}, "Sort: Select a valid choice."),
    ({"degenerate": "maybe"}, "Groups: Select a valid choice."),
    ({"after": "1.5_x"}, "This page link is damaged or out of date"),
    ({"before": "1_2_3_4"}, "This page link is damaged or out of date"),
    ({"sort": "-reward", "after": "inf_-1_0"}, "This page link is damaged or out of date"),
    ({"after": f"-{10**30}_0"}, "This page link is damaged or out of date"),
])
def test_bad_input_gets_a_message_not_an_error(signed_in, three_steps, params, message):
    response = browse(signed_in, three_steps, **params)
    assert response.status_code == 422
    body = response.content.decode()
    assert 'id="filter-errors"' in body and message in body
    assert 'id="rollout-filters"' in body  # the whole page, form included, to fix it


def test_htmx_gets_the_results_partial_and_history_restores_get_the_page(signed_in, three_steps):
    url = reverse("rollouts:browser", args=[three_steps.pk])
    partial = signed_in.get(url, {"step_min": 2}, HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert "<html" not in body and body.lstrip().startswith('<section id="rollout-results"')
    assert 'id="rollout-filters"' not in body
    assert "HX-Request" in partial["Vary"]
    bad = signed_in.get(url, {"step_min": "x"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 422 and 'id="filter-errors"' in bad.content.decode()
    restore = signed_in.get(url, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in restore.content.decode()


def test_the_filter_form_is_a_get_form_with_htmx_and_a_plain_fallback(signed_in, three_steps):
    body = browse(signed_in, three_steps, q="x").content.decode()
    start = body.index('<form id="rollout-filters"')
    form = body[start:body.index("</form>", start)]
    assert 'method="get"' in form and 'hx-get="' in form and 'hx-push-url="true"' in form
    assert 'type="submit"' in form
    assert 'value="x"' in form  # the filters stay filled in


def test_model_text_is_escaped(signed_in, run):
    add_group(run, 1, 0, [1.0, 0.0], prompt=PAYLOAD, prompt_id=PAYLOAD, completion=PAYLOAD,
              rewards={PAYLOAD: 1.0})
    body = browse(signed_in, run, q="<script>").content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;pwned&quot;)" in body


def test_a_page_takes_the_same_few_queries_however_many_groups(signed_in, run,
                                                              django_assert_max_num_queries):
    for step in range(1, 13):
        add_group(run, step, 0, [1.0, 0.0])
    with django_assert_max_num_queries(10):
        assert len(listed(browse(signed_in, run, sort="-reward", truncated="no"))) == 10


def test_outsiders_get_404_and_visitors_must_sign_in(client, three_steps, other_user):
    url = reverse("rollouts:browser", args=[three_steps.pk])
    assert client.get(url).status_code == 302
    client.force_login(other_user)
    assert client.get(url).status_code == 404


def test_viewers_can_browse(client, three_steps, member_of):
    client.force_login(member_of("viewer"))
    assert len(listed(browse(client, three_steps))) == 6


# Degeneracy, as stored -------------------------------------------------------------------------

def test_ingest_keeps_the_trainers_flag_for_a_partly_logged_group(run):
    add_group(run, 1, 0, [1.0, 1.0], group_degenerate=False)  # the unlogged rest differed
    add_group(run, 1, 1, [1.0, 0.0], group_degenerate=True)
    flags = dict(Rollout.objects.filter(run=run, sample_index=0)
                 .values_list("group", "group_degenerate"))
    assert flags == {0: False, 1: True}


def test_ingest_decides_degeneracy_from_the_batch_when_not_told(run):
    rollouts_ingest(run_id=run.pk, step=1, items=[
        {"prompt": "p", "completion": "c", "reward": reward, "group": group, "sample_index": i}
        for group, rewards in enumerate([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.5]])
        for i, reward in enumerate(rewards)])
    flags = dict(Rollout.objects.filter(run=run, sample_index=0)
                 .values_list("group", "group_degenerate"))
    assert flags == {0: True, 1: False, 2: False}  # a group of one has nothing to compare


# Token view -------------------------------------------------------------------------------

@pytest.fixture
def with_tokens(run):
    rollouts_ingest(run_id=run.pk, step=1, items=[{
        "prompt": "1+1", "completion": "<2>", "reward": 1.0, "prompt_id": "1+1",
        "tokens": {"text": ["<", "2", ">"], "logprob": [-0.01, -0.5, -4.0],
                   "entropy": [0.1, 0.7, 2.5], "advantage": [0.05, 0.7, -3.0]}}])
    return Rollout.objects.get(run=run)


def token_spans(body: str) -> list[str]:
    view = body[body.index('id="token-view"'):]
    return re.findall(r"<span [^>]*>", view[:view.index("</p>")])


def test_token_view_colours_by_log_prob_by_default(signed_in, with_tokens):
    body = signed_in.get(reverse("reviews:rollout", args=[with_tokens.pk])).content.decode()
    classes = [re.search(r'class="([^"]+)"', s).group(1) for s in token_spans(body)]
    assert classes == ["tok shade-0", "tok shade-1", "tok shade-4"]
    assert re.search(r'<div class="token-legend" data-quantity="logprob">', body)
    assert re.search(r'<div class="token-legend" data-quantity="entropy" hidden>', body)


def test_token_view_colours_by_the_chosen_quantity_and_keeps_every_value(signed_in, with_tokens):
    url = reverse("reviews:rollout", args=[with_tokens.pk])
    body = signed_in.get(url, {"colour": "advantage"}).content.decode()
    spans = token_spans(body)
    assert [re.search(r'class="([^"]+)"', s).group(1) for s in spans] == [
        "tok adv-0", "tok adv-pos-2", "tok adv-neg-4"]
    assert 'data-logprob="-0.5" data-entropy="0.7" data-advantage="0.7"' in spans[1]
    assert 'data-colour-logprob="shade-1" data-colour-entropy="shade-2" ' \
           'data-colour-advantage="adv-pos-2"' in spans[1]
    assert 'title="log-prob -0.5000 · entropy 0.7000 · advantage 0.7000"' in spans[1]
    assert '<option value="advantage" selected>advantage</option>' in body
    assert ">&lt;</span>" in body and ">&gt;</span>" in body  # token text escaped


def test_token_view_offers_only_the_recorded_quantities(signed_in, with_tokens):
    url = reverse("reviews:rollout", args=[with_tokens.pk])
    body = signed_in.get(url, {"colour": "kl"}).content.decode()  # KL was not recorded
    assert 'value="kl"' not in body and "data-kl" not in body
    assert '<option value="logprob" selected>' in body


def test_token_view_shows_an_algorithms_own_values(signed_in, run):
    # GTPO marks conflict tokens, PRL records its process term; a stray non-number is no value.
    rollouts_ingest(run_id=run.pk, step=1, items=[{
        "prompt": "1+1", "completion": "<2>", "reward": 1.0,
        "tokens": {"text": ["<", "2", ">"], "logprob": [-0.1, -0.2, -0.3],
                   "conflict": [1.0, 0.0, 1.0], "process": [-0.5, 0.05, "x"]}}])
    rollout = Rollout.objects.get(run=run)
    url = reverse("reviews:rollout", args=[rollout.pk])
    body = signed_in.get(url, {"colour": "conflict"}).content.decode()
    spans = token_spans(body)
    assert [re.search(r'class="([^"]+)"', s).group(1) for s in spans] == [
        "tok conflict", "tok shade-0", "tok conflict"]
    assert '<option value="conflict" selected>GTPO conflict tokens</option>' in body
    assert 'data-colour-process="adv-neg-3"' in spans[0]
    assert 'data-process' not in spans[2]  # "x" is no number
    assert 'title="log-prob -0.1000 · PRL process term -0.5000 · GTPO conflict tokens 1.0000"' \
        in spans[0]


def test_the_rollout_page_links_to_its_prompt_history_and_step(signed_in, with_tokens, run):
    body = signed_in.get(reverse("reviews:rollout", args=[with_tokens.pk])).content.decode()
    assert reverse("rollouts:prompt_history", args=[run.pk, "1+1"]) in body
    assert f'{reverse("rollouts:browser", args=[run.pk])}?step_min=1&amp;step_max=1' in body


def test_a_rollout_without_a_prompt_id_has_no_history_link(signed_in, run):
    rollouts_ingest(run_id=run.pk, step=1, items=[{"prompt": "p", "completion": "c",
                                                   "reward": 0.0}])
    rollout = Rollout.objects.get(run=run)
    body = signed_in.get(reverse("reviews:rollout", args=[rollout.pk])).content.decode()
    assert 'id="prompt-history-link"' not in body


def test_doctests_pass():
    assert doctest.testmod(webapp.rollouts.rollout_browser).failed == 0


def test_an_imported_conversation_is_shown_as_a_chat_role_by_role_escaped(signed_in, run):
    """What a TRL conversational file leaves (webapp.rollouts.importers): the messages in
    extra, the text in prompt; and a rollout imported without a score."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PAYLOAD}]
    add_group(run, 1, 0, [1.0, 0.0], prompt=f"system: Be brief.\n\nuser: {PAYLOAD}",
              extra=[{"prompt_messages": messages},
                     {"prompt_messages": messages, "unscored": "its score is NaN"}])

    pages = [browse(signed_in, run),
             signed_in.get(reverse("rollouts:prompt_history", args=[run.pk, "1+0"])),
             signed_in.get(reverse("reviews:rollout",
                                   args=[Rollout.objects.get(sample_index=1).pk]))]

    for page in pages:
        body = page.content.decode()
        assert page.status_code == 200
        assert re.findall(r'<span class="chat-role">(\w+)</span>', body) == ["system", "user"]
        assert PAYLOAD not in body and "&lt;script&gt;alert(" in body
    browser, history, detail = (page.content.decode() for page in pages)
    assert browser.count("no score") == 1
    assert 'mean reward <b class="mono">1.000</b>' in browser  # the unscored one left out
    assert 'id="unscored">no score</span> its score is NaN' in detail
