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


def test_reinforce_pp_whitens_over_tokens_and_keeps_uniform_groups():
    # Two groups, each all alike: GRPO would give them 0; the batch's tokens do not. Completion
    # lengths 2, 1, 1, 2: the returns are 1 1 | 1 | 0 | 0 0 over six tokens.
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    advantages = reinforce_pp.compute_advantages(rewards, mask, eps=0.0)
    tokens = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    std = tokens.std().item()  # unbiased over the six tokens
    up, down = 0.5 / std, -0.5 / std
    assert advantages.flatten().tolist() == pytest.approx([up, up, up, 0.0, down, 0.0, down,
                                                           down])


def test_reinforce_pp_folds_the_kl_into_returns_to_go():
    # One completion of three tokens, KL 0.2, 0.1, 0.4 and a pad whose KL must not count;
    # β = 0.5: G_t = r − β Σ_{t' ≥ t} KL = 1 − 0.35, 1 − 0.25, 1 − 0.2.
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    kl = torch.tensor([[0.2, 0.1, 0.4, 5.0]])
    returns = reinforce_pp.returns_to_go(torch.tensor([1.0]), mask, kl, beta=0.5)
    assert returns[0].tolist() == pytest.approx([0.65, 0.75, 0.8, 0.0])
    # Whitened over the three tokens: mean 0.7333, unbiased std 0.0764
    advantages = reinforce_pp.compute_advantages(torch.tensor([1.0]), mask, kl, 0.5, eps=0.0)
    values = torch.tensor([0.65, 0.75, 0.8])
    expected = ((values - values.mean()) / values.std()).tolist() + [0.0]
    assert advantages[0].tolist() == pytest.approx(expected, abs=1e-5)
