"""RMT's token budget, length reward, entropy curriculum, answer parser and next-token loss
against hand-computed values; the text corpus it reads; and runs on the tiny model with both
rollout backends, resumed exactly from a checkpoint."""

import json
import math
import random

import pytest
import torch
from transformers import AutoTokenizer

from tests.training.conftest import run_and_resume
from training.algorithms.rmt import (
    TokenTable,
    curriculum_log_weights,
    curriculum_progress,
    entropy_ranks,
    next_token_cross_entropy,
    token_budget,
    weighted_draw,
)
from training.loops.train import Outcome, train
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter
from training.spec.text_corpus import (
    BUILTIN_CORPORA,
    CorpusFileError,
    Passage,
    budget_length,
    length_reward,
    load_text_corpus,
    next_token_match,
    next_token_prompt,
    parse_prediction,
    passages_from_text,
    text_corpus_task,
)

METRICS = {"rmt/next_token_accuracy", "rmt/budget", "rmt/reasoning_length",
           "rmt/curriculum_entropy", "rmt/ntp_loss"}


# ---------------------------------------------------------------------------------------------
# (1) The token budget and the length reward


def test_the_budget_decays_from_the_start_to_the_floor():
    # B_0 = 64, γ = 0.25, k = 1, T = 4: 64 · 0.25^(t/4) = 45.25, 32, 22.63, 16 at t = 1..4.
    budgets = [token_budget(t, 4, start=64, floor=10, decay=0.25, power=1.0)
               for t in (1, 2, 3, 4)]
    assert budgets == pytest.approx([64 * 0.25 ** 0.25, 32.0, 64 * 0.25 ** 0.75, 16.0])
    # γ = 0.01: 64 · 0.01^(1/2) = 6.4 at t = 2 of 4, below the floor of 10.
    assert token_budget(2, 4, start=64, floor=10, decay=0.01, power=1.0) == 10
    # k = 2: (2/4)² = 1/4, so at t = 2 the budget is where k = 1 puts t = 1.
    assert token_budget(2, 4, start=64, floor=10, decay=0.25, power=2.0) == pytest.approx(
        64 * 0.25 ** 0.25)
    assert token_budget(3, 4, start=64, floor=10, decay=1.0, power=1.0) == 64


def test_the_length_reward_is_a_triangle_that_peaks_at_the_budget():
    assert [length_reward(n, 10.0) for n in (0, 5, 10, 13, 20, 31)] == pytest.approx(
        [0.0, 0.5, 1.0, 0.7, 0.0, 0.0])
    assert length_reward(3, 2.5) == pytest.approx(0.8)  # 1 − 0.5/2.5


def test_only_a_correct_prediction_earns_the_length_reward():
    completions = ["so <answer>mat</answer>", "<answer>mat</answer>", "<answer>rug</answer>",
                   "mat"]
    rewards = budget_length([""] * 4, completions, next_token=["mat"] * 4, budget=[10.0] * 4,
                            completion_tokens=[10, 14, 10, 10])
    assert rewards == pytest.approx([1.0, 0.6, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------
# The answer format and the next-token reward


def test_the_prediction_is_the_last_answer_stripped():
    assert parse_prediction("It is a list. <answer> salt </answer>") == "salt"
    assert parse_prediction("<answer>a</answer> then <answer>b</answer>") == "b"
    assert parse_prediction("<answer>a\n</answer>") == "a"


def test_a_malformed_completion_has_no_prediction():
    for malformed in ("salt", "<answer>salt", "salt</answer>", "<answer></answer>",
                      "<answer> \n </answer>", ""):
        assert parse_prediction(malformed) is None, malformed


def test_the_next_token_reward_compares_the_stripped_texts_exactly():
    completions = ["<answer>salt</answer>", "<answer>Salt</answer>", "<answer>salty</answer>",
                   "I think salt", "<answer>salt"]
    assert next_token_match([""] * 5, completions, next_token=[" salt"] * 5) == [
        1.0, 0.0, 0.0, 0.0, 0.0]


def test_the_prompt_asks_for_the_format_the_parser_reads():
    prompt = next_token_prompt("Bread needs flour, water, yeast and")
    assert prompt.startswith("Here is the beginning of a text:\n\nBread needs flour, water, "
                             "yeast and\n\nWhat is the next token")
    assert "<answer>" in prompt and "</answer>" in prompt


# ---------------------------------------------------------------------------------------------
# (2) The entropy curriculum


def test_ranks_order_the_entropies_from_lowest_to_highest():
    ranks = entropy_ranks(torch.tensor([2.0, 0.5, 1.0, 3.0]))
    assert ranks.tolist() == pytest.approx([2 / 3, 0.0, 1 / 3, 1.0])
    assert entropy_ranks(torch.tensor([1.0, 1.0, 1.0])).tolist() == [0.0, 0.5, 1.0]


def test_the_curriculum_weights_move_from_the_easiest_to_the_hardest():
    ranks = entropy_ranks(torch.tensor([2.0, 0.5, 1.0, 3.0]))  # u = 2/3, 0, 1/3, 1
    # σ = 0.5: log w = −(u − p)² / 0.5
    start = curriculum_log_weights(ranks, 0.0, 0.5)
    assert start.tolist() == pytest.approx([-(2 / 3) ** 2 / 0.5, 0.0, -(1 / 3) ** 2 / 0.5, -2.0])
    end = curriculum_log_weights(ranks, 1.0, 0.5)
    assert end.tolist() == pytest.approx([-(1 / 3) ** 2 / 0.5, -2.0, -(2 / 3) ** 2 / 0.5, 0.0])
    assert int(start.argmax()) == 1 and int(end.argmax()) == 3
    assert [curriculum_progress(t, 3) for t in (1, 2, 3)] == [0.0, 0.5, 1.0]


def test_a_narrow_curriculum_draws_the_easiest_first_and_the_hardest_last():
    entropy = torch.tensor([2.0, 0.5, 1.0, 3.0])
    ranks = entropy_ranks(entropy)
    rng = random.Random(0)
    first = weighted_draw(curriculum_log_weights(ranks, 0.0, 0.01).tolist(), 2, rng)
    last = weighted_draw(curriculum_log_weights(ranks, 1.0, 0.01).tolist(), 2, rng)
    assert first == [1, 2]  # entropies 0.5, 1.0
    assert last == [3, 0]  # entropies 3.0, 2.0


def test_draws_are_distinct_and_follow_the_weights():
    rng = random.Random(1)
    log_weights = [math.log(w) for w in (8.0, 1.0, 1.0)]
    firsts = [weighted_draw(log_weights, 3, rng) for _ in range(2000)]
    assert all(sorted(draw) == [0, 1, 2] for draw in firsts)
    # P(index 0 drawn first) = 8/10
    assert sum(draw[0] == 0 for draw in firsts) / 2000 == pytest.approx(0.8, abs=0.03)
    assert len(weighted_draw(log_weights, 5, rng)) == 5  # more than there are: with replacement


# ---------------------------------------------------------------------------------------------
# (3) The next-token loss


def test_the_next_token_loss_sums_minus_log_p_of_each_next_token():
    # V = 2; row 0 = tokens 1, 0, 1 with logits giving p(1) = 3/4 at every position;
    # row 1 = token 0 then padding. Predicted: row 0's tokens 2 and 3, row 1's nothing.
    logits = torch.tensor([[[0.0, math.log(3)]] * 3, [[0.0, 0.0]] * 3])  # (2, 3, 2)
    ids = torch.tensor([[1, 0, 1], [0, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    total, count = next_token_cross_entropy(logits, ids, mask)
    assert count == 2
    assert total.item() == pytest.approx(-math.log(1 / 4) - math.log(3 / 4))


def test_uniform_logits_cost_log_of_the_vocabulary_per_token():
    logits = torch.zeros(1, 4, 5, requires_grad=True)
    total, count = next_token_cross_entropy(logits, torch.tensor([[0, 1, 2, 3]]),
                                            torch.ones(1, 4, dtype=torch.long))
    assert count == 3 and total.item() == pytest.approx(3 * math.log(5))
    total.backward()
    assert logits.grad[0, 3].abs().sum() == 0  # the last position predicts nothing


# ---------------------------------------------------------------------------------------------
# The corpus


def test_plain_text_passages_are_paragraphs(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("Title\n\nThe first paragraph\nruns over two lines.\n\n\n"
                    "The second one is here, long enough.\n", encoding="utf-8")
    assert load_text_corpus(path) == (
        Passage("#3", "The first paragraph runs over two lines."),
        Passage("#7", "The second one is here, long enough."))


def test_json_lines_passages_are_their_text(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"text": "A whole passage on one line.", "source": "x"}) + "\n\n"
                    + json.dumps({"text": "Another passage,\nwith a line break."}) + "\n")
    assert load_text_corpus(path) == (Passage("#1", "A whole passage on one line."),
                                      Passage("#3", "Another passage, with a line break."))


def test_bad_json_lines_are_listed(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "A fine passage of enough length."}\nnot json\n{"title": "x"}\n'
                    '{"text": "short"}\n{"text": 3}\n')
    with pytest.raises(CorpusFileError) as bad:
        load_text_corpus(path)
    message = str(bad.value)
    assert "line 2: not a JSON object" in message and "line 3: no \"text\"" in message
    assert "line 4: its text is shorter than 20 characters" in message
    assert "line 5: its \"text\" is not a string" in message


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe not utf-8", "cannot be read as UTF-8"),
    (b"A passage with a NUL \x00 character in it.", "NUL character"),
    (b"\n  \n", "holds no passage"),
])
def test_unusable_corpus_files_are_refused(tmp_path, content, problem):
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusFileError, match=problem):
        load_text_corpus(path)


def test_a_missing_corpus_file_says_where_to_look(tmp_path):
    with pytest.raises(CorpusFileError, match="does not exist on this worker"):
        load_text_corpus(tmp_path / "gone.jsonl")


def test_the_built_in_corpus_ships_tens_of_kilobytes_of_passages():
    path = BUILTIN_CORPORA["text_corpus"]
    assert 20_000 < path.stat().st_size < 100_000
    train = text_corpus_task("text_corpus", split="train").passages
    held_out = text_corpus_task("text_corpus", split="held_out").passages
    assert len(train) > 50 and held_out
    assert not {p.passage_id for p in train} & {p.passage_id for p in held_out}


def test_passages_from_text_leave_out_short_paragraphs():
    assert passages_from_text("Bread\n\nRivers\n") == []


def test_questions_cut_the_text_where_a_token_starts(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "The baker needs flour, water, yeast and salt."
    table = TokenTable((Passage("#1", text),), tokenizer, context=128, min_context=3)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert [t.position for t in table.targets] == list(range(3, len(ids)))
    table.entropy = torch.arange(len(table.targets), dtype=torch.float32)
    last = table.example(len(table.targets) - 1, budget=12.5)
    assert last.columns == {"next_token": ".", "budget": 12.5,
                            "entropy": float(len(table.targets) - 1)}
    assert last.prompt_id == f"#1:{len(ids) - 1}"
    assert last.prompt == next_token_prompt("The baker needs flour, water, yeast and salt")
    salt = table.example(len(table.targets) - 2, budget=12.5)
    assert salt.columns["next_token"] == "salt"
    assert "yeast and\n\nWhat is the next token" in salt.prompt


def test_windows_cut_long_passages(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = " ".join(["word"] * 30)
    table = TokenTable((Passage("#1", text),), tokenizer, context=8, min_context=2)
    assert [w.start for w in table.windows] == [0, 8, 16, 24][:len(table.windows)]
    assert all(len(w.ids) <= 8 for w in table.windows)
    assert {t.position for t in table.targets} <= set(range(2, 8))


# ---------------------------------------------------------------------------------------------
# Config checks


def _rmt(**changes) -> dict:
    return {"algorithm": "rmt", "task": "text_corpus", **changes}


def test_rmt_needs_a_text_corpus_and_a_text_corpus_needs_rmt():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "rmt"})
    assert "text_corpus" in bad.value.errors["task"]
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "grpo", "task": "text_corpus"})
    assert "choose RMT" in bad.value.errors["task"]
    assert RunConfig.from_dict(_rmt()).algorithm_settings.rmt_budget_start == 32
    assert RunConfig.from_dict({"algorithm": "rmt", "dataset": "/data/corpus.jsonl"},
                               paths=True).task == "arithmetic"


def test_rmt_refuses_settings_that_cannot_work():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict(_rmt(prompt_sampler="spo_priority", eval_every=5, max_new_tokens=16,
                                 group_size=1))
    assert set(bad.value.errors) == {"prompt_sampler", "eval_every", "rmt_budget_start",
                                     "group_size"}
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict(_rmt(rmt_budget_floor=64, rmt_min_context=200))
    assert set(bad.value.errors) == {"rmt_budget_floor", "rmt_min_context"}


# ---------------------------------------------------------------------------------------------
# Runs on the tiny model


def _rmt_config(tiny_config: RunConfig, **changes) -> RunConfig:
    return tiny_config.with_changes(**{
        "algorithm": "rmt", "task": "text_corpus", "rmt_budget_start": 6, "rmt_budget_floor": 2,
        "rmt_context_tokens": 32, "token_details_per_step": 2, **changes})


def _check_two_steps(reporter: ListReporter) -> None:
    metrics = [event["values"] for event in reporter.of_kind("metrics")]
    assert len(metrics) == 2
    for values in metrics:
        assert set(values) >= METRICS
        assert 0 <= values["rmt/next_token_accuracy"] <= 1
        assert values["rmt/reasoning_length"] == values["completion/length_mean"]
        # the next-token loss alone moves the weights: the random model predicts nothing right
        assert values["rmt/ntp_loss"] > 0 and values["optim/grad_norm"] > 0
    # B_0 = 6, γ = 0.25, T = 2: 6 · 0.25^(1/2) = 3, then 6 · 0.25 = 1.5 -> the floor, 2
    assert [v["rmt/budget"] for v in metrics] == pytest.approx([3.0, 2.0])
    items = reporter.of_kind("rollouts")[0]["items"]
    assert items and all(set(i["rewards"]) == {"next_token", "length"} for i in items)
    assert all(i["extra"]["budget"] == pytest.approx(3.0) for i in items)
    assert all(i["prompt"].startswith("Here is the beginning of a text") for i in items)
    logs = [e["message"] for e in reporter.of_kind("log")]
    assert any(m.startswith("RMT: ") and "target tokens" in m for m in logs)


def test_two_steps_on_the_built_in_corpus(tiny_config):
    reporter = ListReporter()
    assert train(_rmt_config(tiny_config), reporter) is Outcome.COMPLETED, \
        reporter.of_kind("error")
    _check_two_steps(reporter)


def test_the_curriculum_starts_with_the_easiest_tokens(tiny_config):
    # σ small: the first step's targets are the lowest-entropy ones of the corpus, the last
    # step's the highest.
    reporter = ListReporter()
    config = _rmt_config(tiny_config, rmt_curriculum_width=0.01, prompts_per_step=2)
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    first, last = [e["values"]["rmt/curriculum_entropy"] for e in reporter.of_kind("metrics")]
    assert first < last


def test_two_steps_with_vllm_rollouts(tiny_model, tmp_path):
    pytest.importorskip("vllm")
    from tests.training.rollouts.test_vllm_backend import save_tiny_policy

    policy = save_tiny_policy(tiny_model, tmp_path, heads=2)
    config = RunConfig.from_dict(_rmt(
        model=str(policy), rollout_backend="vllm", max_steps=2, prompts_per_step=2,
        group_size=3, max_new_tokens=6, micro_batch_size=4, rollouts_logged_per_step=4,
        rmt_budget_start=6, rmt_budget_floor=2, rmt_context_tokens=32), paths=True)
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    assert any("rollouts by vllm" in e["message"] for e in reporter.of_kind("log"))
    _check_two_steps(reporter)


def test_a_text_corpus_dataset_is_trained_on(tiny_config, tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": f"Passage number {i} tells of rivers that run "
                                                f"to the sea and of bread that rises."}) + "\n"
                            for i in range(4)))
    reporter = ListReporter()
    config = _rmt_config(tiny_config, task="arithmetic", dataset=str(path), max_steps=1)
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    ids = {i["prompt_id"].split(":")[0] for i in reporter.of_kind("rollouts")[0]["items"]}
    assert ids <= {"#1", "#2", "#3", "#4"}


def test_a_bad_corpus_file_fails_the_run_with_its_message(tiny_config, tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("not json\n")
    reporter = ListReporter()
    config = _rmt_config(tiny_config, dataset=str(path))
    assert train(config, reporter) is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert "line 1: not a JSON object" in error["message"]


def test_a_resumed_run_repeats_the_uninterrupted_steps(tiny_config, tmp_path):
    config = _rmt_config(tiny_config, max_steps=3, checkpoint_every=1, keep_checkpoints=3,
                         learning_rate=1e-2, rollouts_logged_per_step=6)
    straight, again = run_and_resume(config, tmp_path, at=1)
    assert not any(e["message"].startswith("RMT: ") for e in again.of_kind("log"))
    want = {e["step"]: e["values"] for e in straight.of_kind("metrics")}
    got = {e["step"]: e["values"] for e in again.of_kind("metrics")}
    assert sorted(got) == [2, 3]
    for step in (2, 3):
        untimed = {k: v for k, v in got[step].items() if not k.startswith(("time/", "perf/"))}
        assert untimed == pytest.approx({k: want[step][k] for k in untimed}, rel=1e-5, abs=1e-7)
    prompts = [[i["prompt_id"] for i in e["items"]] for e in straight.of_kind("rollouts")[1:]]
    assert prompts == [[i["prompt_id"] for i in e["items"]] for e in again.of_kind("rollouts")]


def test_a_checkpoint_of_another_corpus_is_refused(tiny_model, tiny_config):
    from training.algorithms.rmt import RMT
    from training.checkpoints import CheckpointError

    algorithm = RMT(_rmt_config(tiny_config))
    algorithm.prompt_sampler(text_corpus_task("text_corpus", split="train"),
                             AutoTokenizer.from_pretrained(tiny_model))
    with pytest.raises(CheckpointError, match="holds the proxy's entropy at 3 target tokens"):
        algorithm.load_state_dict({}, {"rmt_entropy": torch.zeros(3)})
