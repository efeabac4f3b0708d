"""DPO: the sigmoid and IPO losses, preference datasets, and the offline training loop."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from training.algorithms.dpo import PairLogps, ipo_loss, sigmoid_loss
from training.spec.config import RunConfig
from training.loops.offline import encode_pairs
from training.spec.events import ListReporter
from training.policies.loading import load_policy
from training.spec.preference_dataset import PairSampler, PreferencePair, load_preference_dataset
from training.spec.prompt_dataset import DatasetFileError
from training.loops.train import Outcome, train

PREFERENCES = Path(__file__).parents[1] / "data" / "preferences.jsonl"
STEP_METRICS = {
    "loss/dpo", "rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy",
    "logps/chosen", "logps/rejected", "completion/truncated_fraction", "optim/lr",
    "optim/grad_norm", "time/update_s", "time/step_s", "perf/tokens_per_s",
}

# Two pairs. Pair 1: log-ratios +1 (chosen) and −1 (rejected); pair 2: 0 and +4.
LOGPS = PairLogps(chosen=torch.tensor([-2.0, -4.0]), rejected=torch.tensor([-4.0, -1.0]),
                  ref_chosen=torch.tensor([-3.0, -4.0]), ref_rejected=torch.tensor([-3.0, -5.0]),
                  chosen_tokens=torch.tensor([2.0, 4.0]), rejected_tokens=torch.tensor([4.0, 8.0]))
# With β = 0.5: rewards chosen (0.5, 0), rejected (−0.5, 2), margins (1, −2).
EXPECTED_STATS = {"rewards/chosen": 0.25, "rewards/rejected": 0.75, "rewards/margin": -0.5,
                  "rewards/accuracy": 0.5, "logps/chosen": -3.0, "logps/rejected": -2.5}


def test_sigmoid_loss_is_minus_log_sigmoid_of_the_reward_margin():
    loss, stats = sigmoid_loss(LOGPS, beta=0.5)
    # β·h = 0.5·(1 − (−1)) = 1 and 0.5·(0 − 4) = −2; −log σ(x) = log(1 + e^(−x))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 2)
    assert {k: v.item() for k, v in stats.items()} == pytest.approx(EXPECTED_STATS)


def test_ipo_loss_regresses_the_length_averaged_gap_onto_one_over_two_beta():
    loss, stats = ipo_loss(LOGPS, beta=0.5)
    # h = 1/2 − (−1)/4 = 0.75 and 0/4 − 4/8 = −0.5; 1/(2β) = 1
    assert loss.item() == pytest.approx(((0.75 - 1) ** 2 + (-0.5 - 1) ** 2) / 2)
    # the logged rewards are from summed log-probs, whichever the loss
    assert {k: v.item() for k, v in stats.items()} == pytest.approx(EXPECTED_STATS)


def test_the_sigmoid_gradient_raises_the_chosen_and_lowers_the_rejected_reply():
    chosen, rejected = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    logps = PairLogps(chosen=chosen, rejected=rejected, ref_chosen=torch.zeros(1),
                      ref_rejected=torch.zeros(1), chosen_tokens=torch.ones(1),
                      rejected_tokens=torch.ones(1))
    loss, _ = sigmoid_loss(logps, beta=0.1)
    loss.backward()
    # d/dh −log σ(βh) = −β σ(−βh) = −0.05 at h = 0
    assert chosen.grad.item() == pytest.approx(-0.05)
    assert rejected.grad.item() == pytest.approx(0.05)


def _write(tmp_path, lines: list[str]) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_rows_become_pairs_named_by_line(tmp_path):
    row = {"prompt": "Hi", "chosen": "Hello!", "rejected": "What?"}
    pairs = load_preference_dataset(_write(tmp_path, [json.dumps(row), "", json.dumps(row)]))
    assert [(p.pair_id, p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ("#1", "Hi", "Hello!", "What?"), ("#3", "Hi", "Hello!", "What?")]


def test_bad_rows_are_errors_with_their_line(tmp_path):
    path = _write(tmp_path, ['{"prompt": "a", "chosen": "b", "rejected": "c"}',
                             '{"prompt": "a", "rejected": "c"}', '{"prompt": "a", "chosen": "b"}',
                             '{"chosen": "b", "rejected": "c"}', "[1, 2]",
                             '{"prompt": "a", "chosen": " ", "rejected": "c"}'])
    with pytest.raises(DatasetFileError) as info:
        load_preference_dataset(path)
    assert str(info.value) == (
        f"The dataset file {str(path)!r} has errors: line 2: no chosen reply; line 3: no "
        f"rejected reply; line 4: no prompt; line 5: not a JSON object; line 6: no chosen reply")


def test_a_prompt_dataset_is_named_as_such(tmp_path):
    with pytest.raises(DatasetFileError, match="is a prompt dataset"):
        load_preference_dataset(_write(tmp_path, ['{"prompt": "Compute 1 + 1.", "answer": 2}']))


def test_a_missing_or_empty_file_is_an_error(tmp_path):
    with pytest.raises(DatasetFileError, match="does not exist on this worker"):
        load_preference_dataset(tmp_path / "gone.jsonl")
    with pytest.raises(DatasetFileError, match="has no preference pairs"):
        load_preference_dataset(_write(tmp_path, [""]))


def test_the_sampler_uses_every_pair_once_per_epoch():
    pairs = [PreferencePair(f"#{i}", "prompt", "chosen", "rejected") for i in range(8)]
    sampler = PairSampler(pairs, seed=3)
    drawn = [pair.pair_id for _ in range(6) for pair in sampler.sample(3)]  # 18: 2¼ epochs
    for epoch in (drawn[:8], drawn[8:16]):
        assert sorted(epoch) == sorted(pair.pair_id for pair in pairs)
    assert drawn[:8] != drawn[8:16]  # reshuffled


def test_a_restored_sampler_goes_on_where_it_stopped():
    pairs = load_preference_dataset(PREFERENCES)
    sampler = PairSampler(pairs, seed=0)
    sampler.sample(3)
    restored = PairSampler(pairs, seed=99)
    restored.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    assert [restored.sample(3) for _ in range(4)] == [sampler.sample(3) for _ in range(4)]


@pytest.fixture
def dpo_config(tiny_model: Path) -> RunConfig:
    """Two steps of two pairs on the tiny model."""
    return RunConfig(algorithm="dpo", model=str(tiny_model), dataset=str(PREFERENCES),
                     max_steps=2, prompts_per_step=2, max_new_tokens=8, micro_batch_size=4,
                     rollouts_logged_per_step=4)


def test_a_pair_is_the_chat_prompt_then_each_reply_and_eos(tiny_model):
    _, tokenizer = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    pairs = load_preference_dataset(PREFERENCES)[:2]  # replies of 14, 1, 2 and 13 tokens + EOS
    batch = encode_pairs(tokenizer, pairs, max_reply_tokens=8, device=torch.device("cpu"))
    assert batch.lengths.tolist() == [8, 2, 3, 8]
    assert batch.truncated.tolist() == [True, False, False, True]
    width = batch.completion_mask.shape[1]
    for row, pair in enumerate(p for p in pairs for _ in range(2)):
        ids = batch.input_ids[row][batch.attention_mask[row].bool()]
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": pair.prompt}],
                                               add_generation_prompt=True, tokenize=False)
        reply = ids[len(ids) - int(batch.lengths[row]):].tolist()
        assert tokenizer.decode(ids[:len(ids) - len(reply)]) == prompt
        assert (reply[-1] == tokenizer.eos_token_id) != bool(batch.truncated[row])
        assert batch.completion_mask[row].tolist() == [1] * len(reply) + [0] * (width - len(reply))
    assert tokenizer.decode(batch.input_ids[1, -width:][:2]) == "6<|im_end|>"


def _run(config, **kwargs):
    reporter = ListReporter()
    return train(config, reporter, **kwargs), reporter


def _metrics(config) -> list[dict[str, float]]:
    """Each step's metric values."""
    return [event["values"] for event in _run(config)[1].of_kind("metrics")]


def test_two_steps_report_every_metric_finite(dpo_config):
    outcome, reporter = _run(dpo_config)
    assert outcome is Outcome.COMPLETED
    [status] = reporter.of_kind("status")
    assert status["status"] == "running" and status["total_steps"] == 2
    metrics = reporter.of_kind("metrics")
    assert [m["step"] for m in metrics] == [1, 2]
    for event in metrics:
        assert STEP_METRICS <= set(event["values"])  # non-finite values would have been dropped
    first = metrics[0]["values"]
    # before the first update the policy is the reference: every implicit reward is 0, up to
    # rounding (the two models' forward passes may take differently vectorised kernels)
    assert first["loss/dpo"] == pytest.approx(math.log(2))
    assert first["rewards/margin"] == pytest.approx(0, abs=1e-5)
    assert first["optim/grad_norm"] > 0
    assert metrics[1]["values"]["rewards/margin"] != 0
    assert [(p["step"], p["total_steps"]) for p in reporter.of_kind("progress")] == [(1, 2), (2, 2)]
    warnings = [e["message"] for e in reporter.of_kind("log") if e["level"] == "warning"]
    assert len(warnings) == 1 and "longer than max new tokens (8)" in warnings[0]


def test_train_hands_a_dpo_run_to_the_dpo_loop(dpo_config):
    reporter = ListReporter()
    assert train(dataclasses.replace(dpo_config, max_steps=1), reporter) is Outcome.COMPLETED
    assert "loss/dpo" in reporter.of_kind("metrics")[0]["values"]


def test_each_logged_pair_is_a_group_of_chosen_then_rejected(dpo_config):
    _, reporter = _run(dpo_config)
    pairs = {p.pair_id: p for p in load_preference_dataset(PREFERENCES)}
    for event in reporter.of_kind("rollouts"):
        items = event["items"]
        assert [(i["group"], i["sample_index"]) for i in items] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        for item in items:
            pair = pairs[item["prompt_id"]]
            preference = item["extra"]["preference"]
            assert preference == ("chosen", "rejected")[item["sample_index"]]
            assert item["completion"] == getattr(pair, preference)
            assert item["prompt"] == pair.prompt and item["advantage"] == 0.0
            assert 1 <= item["completion_tokens"] <= dpo_config.max_new_tokens
    # the policy is the reference before the first update: implicit rewards 0, up to rounding
    assert all(abs(i["reward"]) < 1e-5 for i in reporter.of_kind("rollouts")[0]["items"])
    assert any(i["reward"] != 0 for i in reporter.of_kind("rollouts")[1]["items"])


def test_ipo_starts_at_the_square_of_one_over_two_beta(dpo_config):
    config = dpo_config.with_changes(dpo_loss="ipo", dpo_beta=0.25, max_steps=1)
    _, reporter = _run(config)
    assert reporter.of_kind("metrics")[0]["values"]["loss/dpo"] == pytest.approx(4.0)


def test_training_widens_the_margin_on_the_training_pairs(dpo_config):
    config = dataclasses.replace(dpo_config, prompts_per_step=4, max_steps=5,
                                 learning_rate=1e-3, max_new_tokens=16)
    values = _metrics(config)
    margins = [v["rewards/margin"] for v in values]
    assert margins[0] == pytest.approx(0, abs=1e-5)
    assert all(later > earlier for earlier, later in zip(margins, margins[1:]))
    assert values[-1]["rewards/accuracy"] == 1
    assert values[-1]["loss/dpo"] < values[0]["loss/dpo"]


def test_micro_batching_does_not_change_the_update(dpo_config):
    config = dataclasses.replace(dpo_config, prompts_per_step=3, learning_rate=1e-3)
    whole, split = (_metrics(dataclasses.replace(config, micro_batch_size=size))
                    for size in (6, 2))
    for step in range(2):  # the same gradient, then the same weights after the update
        for key in ("loss/dpo", "rewards/margin", "logps/chosen", "optim/grad_norm"):
            assert split[step][key] == pytest.approx(whole[step][key], rel=1e-4, abs=1e-6)


def test_a_bad_dataset_fails_the_run_before_loading_the_model(dpo_config, tmp_path):
    path = _write(tmp_path, ['{"prompt": "a", "chosen": "b", "rejected": "c"}', '{"prompt": "x"}'])
    outcome, reporter = _run(dataclasses.replace(dpo_config, dataset=str(path)))
    assert outcome is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert "line 2: no chosen reply" in error["message"]
    assert not reporter.of_kind("status")


def test_a_stop_request_between_steps_ends_the_run(dpo_config):
    reporter = ListReporter()
    outcome = train(dataclasses.replace(dpo_config, max_steps=5), reporter,
                        should_stop=lambda: bool(reporter.of_kind("metrics")))
    assert outcome is Outcome.STOPPED
    assert len(reporter.of_kind("metrics")) == 1
    assert reporter.of_kind("log")[-1]["message"] == "stopped on request after step 1"


def test_a_stop_request_between_micro_batches_ends_the_step(dpo_config):
    calls = []

    def stop_at_the_second_micro_batch() -> bool:
        calls.append(1)  # asked before step 1, then before each micro-batch of one pair
        return len(calls) == 3

    outcome, reporter = _run(dataclasses.replace(dpo_config, micro_batch_size=2),
                             should_stop=stop_at_the_second_micro_batch)
    assert outcome is Outcome.STOPPED
    assert not reporter.of_kind("metrics")
    assert reporter.of_kind("log")[-1]["message"] == "stopped on request during step 1"


def test_a_resumed_run_continues_exactly(dpo_config, tmp_path):
    config = dataclasses.replace(dpo_config, max_steps=3, learning_rate=1e-3)
    _, straight = _run(config)
    _, first = _run(dataclasses.replace(config, max_steps=2), output_dir=tmp_path)
    [checkpoint] = first.of_kind("checkpoint")
    assert checkpoint["step"] == 2 and checkpoint["final"]
    outcome, resumed = _run(dataclasses.replace(config, resume_from=checkpoint["path"]))
    assert outcome is Outcome.COMPLETED
    [expected] = [m["values"] for m in straight.of_kind("metrics") if m["step"] == 3]
    [got] = [m for m in resumed.of_kind("metrics")]
    assert got["step"] == 3
    for key in ("loss/dpo", "rewards/margin", "logps/chosen", "optim/grad_norm"):
        assert got["values"][key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6)
    assert resumed.of_kind("rollouts")[0]["items"][0]["prompt_id"] == \
        straight.of_kind("rollouts")[2]["items"][0]["prompt_id"]


def test_lora_trains_against_the_policy_with_its_adapters_off(dpo_config):
    outcome, reporter = _run(dataclasses.replace(dpo_config, lora_rank=4, learning_rate=1e-3))
    assert outcome is Outcome.COMPLETED
    first, second = (m["values"] for m in reporter.of_kind("metrics"))
    assert first["rewards/margin"] == 0 and first["optim/grad_norm"] > 0
    assert second["rewards/margin"] > 0
