"""RLOO's leave-one-out and REINFORCE++'s global-batch advantages, by hand."""

import pytest
import torch

from training.algorithms import reinforce_pp, rloo


def test_rloo_subtracts_the_mean_of_the_other_completions():
    rewards = torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    advantages = rloo.compute_advantages(rewards, group_size=3)
    # group 1: 1 − 0, 0 − ½, 0 − ½; group 2: all equal, so 0
    assert advantages.tolist() == pytest.approx([1.0, -0.5, -0.5, 0.0, 0.0, 0.0])


def test_rloo_is_the_group_centred_reward_scaled_by_g_over_g_minus_one():
    rewards = torch.tensor([0.3, 1.7, 0.2, 0.9])
    centred = rewards - rewards.mean()
    assert torch.allclose(rloo.compute_advantages(rewards, group_size=4), centred * 4 / 3)


def test_reinforce_pp_uses_the_whole_batch_and_keeps_uniform_groups():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0])  # two groups, each all alike
    advantages = reinforce_pp.compute_advantages(rewards, eps=0.0)
    std = rewards.std().item()  # unbiased: sqrt(1/3)
    assert advantages.tolist() == pytest.approx([0.5 / std, 0.5 / std, -0.5 / std, -0.5 / std])
