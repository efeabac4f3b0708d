"""SPO's value tracker, forgetting factor, advantages and sampling weights, by hand."""

import json
import math

import pytest
import torch

from training.algorithms import grpo, spo
from training.algorithms.spo import LastCompletions, SPOConfig, ValueTracker
from training.ops import zero_fraction
from training.spec.config import ConfigError, RunConfig

# ρ = 0.9 exactly: 2^(−D/0.06) = 0.9
D_FOR_09 = 0.06 * math.log2(1 / 0.9)


def test_advantages_are_reward_minus_baseline_normalised_over_the_batch():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0])
    baselines = torch.tensor([0.25, 0.75, 0.25, 0.75])
    # r − v̂ = [0.75, 0.25, −0.25, −0.75]: mean 0, unbiased std sqrt(1.25/3)
    std = math.sqrt(1.25 / 3)
    assert spo.compute_advantages(rewards, baselines, eps=0.0).tolist() == pytest.approx(
        [0.75 / std, 0.25 / std, -0.25 / std, -0.75 / std])


def test_a_batch_of_one_completion_has_advantage_zero():
    assert spo.compute_advantages(torch.tensor([1.0]), torch.tensor([0.3])).tolist() == [0.0]


def test_a_batch_where_every_reward_meets_its_baseline_equally_has_advantage_zero():
    # r − v̂ = −1/6 for all six: float rounding in the mean must not turn into ±0.5 advantages
    baselines = torch.full((6,), 1 / 6)
    advantages = spo.compute_advantages(torch.zeros(6), baselines)
    assert advantages.tolist() == [0.0] * 6


def test_zero_advantage_fraction_counts_grpo_degenerate_groups():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])  # the first group is all correct
    advantages = grpo.compute_advantages(rewards, group_size=3)
    assert zero_fraction(advantages) == pytest.approx(0.5)
    baselines = torch.tensor([0.9, 0.6, 0.5, 0.2, 0.7, 0.4])  # a tracker's values
    assert zero_fraction(spo.compute_advantages(rewards, baselines)) == 0.0


def test_log_prob_change_is_the_mean_absolute_difference_on_completion_tokens():
    then = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    now = torch.tensor([[-1.2, -1.7, -9.0], [-3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert spo.log_prob_change(then, now, mask).tolist() == pytest.approx([0.25, 0.0])


def test_forgetting_factor_halves_per_half_life_within_its_bounds():
    change = torch.tensor([0.0, D_FOR_09, 0.06, 1.0])
    rho = spo.forgetting_factor(change, half_life=0.06, rho_min=0.875, rho_max=0.96)
    # 2^0 = 1 → 0.96; 0.9 stays; 2^−1 = 0.5 → 0.875; 2^−16.7 → 0.875
    assert rho.tolist() == pytest.approx([0.96, 0.9, 0.875, 0.875])


def test_priority_weights_prefer_uncertain_prompts_and_never_reach_zero():
    values = torch.tensor([0.5, 0.0, 1.0, 0.9, 1.3, -0.2])
    assert spo.priority_weights(values).tolist() == pytest.approx(
        [0.55, 0.05, 0.05, 0.35, 0.05, 0.05])


def test_an_unseen_prompt_is_worth_one_half():
    tracker = ValueTracker()
    assert tracker.value(["new"]).tolist() == [0.5]
    assert "new" not in tracker


def test_update_discounts_old_evidence_then_adds_the_reward():
    tracker = ValueTracker(SPOConfig(half_life=0.06, rho_min=0.875, rho_max=0.96))
    rho = tracker.update(["a", "b"], torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.06]))
    assert rho.tolist() == pytest.approx([0.96, 0.875])
    # a: α = 0.96·½ + 1 = 1.48, β = 0.96·½ = 0.48; b: α = 0.875·½ = 0.4375, β = 1.4375
    assert (tracker.alpha["a"], tracker.beta["a"]) == pytest.approx((1.48, 0.48))
    assert (tracker.alpha["b"], tracker.beta["b"]) == pytest.approx((0.4375, 1.4375))
    assert tracker.value(["a", "b"]).tolist() == pytest.approx([1.48 / 1.96, 0.4375 / 1.875])
    tracker.update(["a"], torch.tensor([0.0]), torch.tensor([D_FOR_09]))
    # ρ = 0.9: α = 0.9·1.48 = 1.332, β = 0.9·0.48 + 1 = 1.432
    assert (tracker.alpha["a"], tracker.beta["a"]) == pytest.approx((1.332, 1.432))
    assert tracker.visits == {"a": 2, "b": 1}


def test_a_prompt_twice_in_a_batch_counts_both_completions():
    tracker = ValueTracker()
    tracker.update(["a", "a"], torch.tensor([1.0, 1.0]), torch.zeros(2))
    # α = 0.96·(0.96·½ + 1) + 1 = 2.4208, β = 0.96·0.96·½ = 0.4608
    assert (tracker.alpha["a"], tracker.beta["a"]) == pytest.approx((2.4208, 0.4608))


def test_prime_weighs_the_offline_samples_as_much_as_the_steady_state():
    tracker = ValueTracker()  # ρ_min = 0.875: N₀ = 1/(1 − 0.875) = 8
    tracker.prime("p", successes=6, trials=8)
    # α = 8·6.5/9, β = 8·2.5/9
    assert (tracker.alpha["p"], tracker.beta["p"]) == pytest.approx((52 / 9, 20 / 9))
    assert tracker.value(["p"]).item() == pytest.approx(6.5 / 9)
    assert "p" in tracker
    with pytest.raises(ValueError):
        tracker.prime("q", successes=0, trials=0)


def test_config_comes_from_the_run():
    config = SPOConfig.from_run_config(RunConfig.from_dict(
        {"algorithm": "spo", "group_size": 1, "spo_half_life": 0.1, "spo_max_forgetting": 0.5,
         "spo_prior_samples": 4}))
    assert config == SPOConfig(half_life=0.1, rho_min=0.5, rho_max=0.5, prior_samples=4)
    assert SPOConfig.from_run_config(RunConfig(algorithm="spo", group_size=1)).rho_min == 0.875


def test_tracker_state_survives_json_and_goes_on_identically():
    tracker = ValueTracker()
    tracker.prime("p", successes=1, trials=4)
    tracker.update(["p", "q"], torch.tensor([1.0, 0.0]), torch.tensor([0.01, 0.0]))
    copy = ValueTracker()
    copy.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
    for t in (tracker, copy):
        t.update(["q", "r"], torch.tensor([1.0, 1.0]), torch.tensor([0.02, 0.0]))
    assert copy.state_dict() == tracker.state_dict()
    assert torch.equal(copy.value(["p", "q", "r"]), tracker.value(["p", "q", "r"]))


def _two_rollouts():
    """Two rows in the trainer's layout: P = 3 (left-padded), T = 3 (right-padded)."""
    input_ids = torch.tensor([[0, 5, 6, 7, 8, 0],
                              [4, 5, 6, 9, 0, 0]])
    attention_mask = torch.tensor([[0, 1, 1, 1, 1, 0],
                                   [1, 1, 1, 1, 0, 0]])
    completion_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    logprobs = torch.tensor([[-0.5, -1.5, 0.0], [-2.0, 0.0, 0.0]])
    return input_ids, attention_mask, completion_mask, logprobs


def test_last_completions_batches_stored_rows_in_the_rollout_layout():
    memory = LastCompletions()
    memory.remember(["a", "b"], *_two_rollouts())
    assert "a" in memory and "c" not in memory
    stored = memory.batch(["b", "a"], pad_token_id=0)
    # b: prompt 4 5 6, completion 9; a: prompt 5 6 (one pad), completion 7 8
    assert stored.rollouts.input_ids.tolist() == [[4, 5, 6, 9, 0], [0, 5, 6, 7, 8]]
    assert stored.rollouts.attention_mask.tolist() == [[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]]
    assert stored.rollouts.completion_mask.tolist() == [[1, 0], [1, 1]]
    assert stored.rollouts.lengths.tolist() == [1, 2]
    assert stored.logprobs.tolist() == [[-2.0, 0.0], [-0.5, -1.5]]


def test_last_completions_keep_only_the_latest_and_survive_json():
    memory = LastCompletions()
    input_ids, attention_mask, completion_mask, logprobs = _two_rollouts()
    memory.remember(["a", "b"], input_ids, attention_mask, completion_mask, logprobs)
    memory.remember(["a"], input_ids[1:], attention_mask[1:], completion_mask[1:], logprobs[1:])
    copy = LastCompletions()
    copy.load_state_dict(json.loads(json.dumps(memory.state_dict())))
    assert copy.entries == memory.entries == {"a": ([4, 5, 6], [9], [-2.0]),
                                              "b": ([4, 5, 6], [9], [-2.0])}


def test_the_tracker_counts_rewards_clipped_to_zero_and_one():
    clipped, plain = ValueTracker(), ValueTracker()
    clipped.update(["a", "b"], torch.tensor([2.5, -1.0]), torch.zeros(2))
    plain.update(["a", "b"], torch.tensor([1.0, 0.0]), torch.zeros(2))
    assert (clipped.alpha, clipped.beta) == (plain.alpha, plain.beta)


def test_spo_runs_one_completion_per_prompt():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "spo", "group_size": 4})
    assert bad.value.errors == {
        "group_size": "SPO samples one completion per prompt: set the group size to 1"}
