import math

import pytest
import torch

from training.algorithms.ppo import (
    ValueHead,
    explained_variance,
    gae,
    logprobs_entropy_and_values,
    token_rewards,
    value_loss,
    whiten,
)
from training.policies.loading import load_policy
from training.rollouts.logprobs import completion_logprobs


def test_the_reward_lands_on_the_last_token_and_the_kl_on_every_token():
    rewards = torch.tensor([1.0, 2.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    assert torch.equal(token_rewards(rewards, mask), torch.tensor([[0.0, 0, 1], [2, 0, 0]]))
    expected = torch.tensor([[-0.05, -0.1, 1 - 0.15], [2 - 0.2, 0, 0]])
    assert torch.allclose(token_rewards(rewards, mask, kl, beta=0.5), expected)


def test_gae_with_gamma_and_lambda_one_is_the_reward_to_go_minus_the_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [-0.1, 0.5, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.3, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    reward_to_go = torch.tensor([[1.0, 1.0, 1.0], [0.4, 0.5, 0.0]])
    assert torch.allclose(returns, reward_to_go)
    assert torch.allclose(advantages, (reward_to_go - values) * mask)


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    # δ_2 = 1 − 0.7 = 0.3;  δ_1 = 0.9·0.7 − 0.6 = 0.03;  δ_0 = 0.9·0.6 − 0.5 = 0.04
    # Â_2 = 0.3;  Â_1 = 0.03 + 0.72·0.3 = 0.246;  Â_0 = 0.04 + 0.72·0.246 = 0.21712
    assert torch.allclose(advantages, torch.tensor([[0.21712, 0.246, 0.3]]))
    assert torch.allclose(returns, torch.tensor([[0.71712, 0.846, 1.0]]))


def test_right_padding_does_not_leak_into_gae():
    rewards = torch.tensor([[0.2, -0.3, 1.0]])
    values = torch.tensor([[0.5, 0.1, 0.7]])
    alone, alone_returns = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    # The same completion padded to 5 tokens, with rewards and values left in the padding.
    padded, padded_returns = gae(torch.cat([rewards, torch.tensor([[5.0, 7.0]])], dim=1),
                                 torch.cat([values, torch.tensor([[3.0, -4.0]])], dim=1),
                                 torch.tensor([[1, 1, 1, 0, 0]]), gamma=0.9, lam=0.8)
    assert torch.allclose(padded[:, :3], alone) and torch.allclose(padded_returns[:, :3],
                                                                    alone_returns)
    assert padded[:, 3:].abs().sum() == 0 and padded_returns[:, 3:].abs().sum() == 0


def test_gae_sends_no_gradient_to_the_values():
    values = torch.tensor([[0.5, 0.6]], requires_grad=True)
    advantages, returns = gae(torch.tensor([[0.0, 1.0]]), values, torch.ones(1, 2), 1.0, 1.0)
    assert not advantages.requires_grad and not returns.requires_grad


def test_whitening_gives_zero_mean_and_unit_std_over_the_masked_tokens():
    advantages = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    whitened = whiten(advantages, mask)
    # masked tokens 1, 2, 3, 4: mean 2.5, unbiased variance (2.25 + 0.25 + 0.25 + 2.25) / 3
    std = math.sqrt(5 / 3)
    expected = torch.tensor([[-1.5 / std, -0.5 / std, 0.5 / std], [1.5 / std, 0.0, 0.0]])
    assert torch.allclose(whitened, expected, atol=1e-6)
    valid = whitened[mask.bool()]
    assert valid.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert valid.std().item() == pytest.approx(1.0, abs=1e-6)


def test_the_clipped_value_loss_uses_the_larger_term():
    old_values = torch.zeros(3)
    values = torch.tensor([0.5, -0.1, 0.5], requires_grad=True)
    returns = torch.tensor([1.0, 1.0, 0.0])
    loss, stats = value_loss(values[None], old_values[None], returns[None], torch.ones(1, 3),
                             clip=0.2)
    # token 0: (0.5 − 1)² = 0.25 but clipped V = 0.2 gives (0.2 − 1)² = 0.64, the larger;
    # token 1: V inside the clip range, both terms (−1.1)² = 1.21;
    # token 2: (0.5 − 0)² = 0.25 beats the clipped (0.2 − 0)² = 0.04.
    assert loss.item() == pytest.approx(0.5 * (0.64 + 1.21 + 0.25) / 3)
    assert stats["value/clip_fraction"].item() == pytest.approx(1 / 3)
    loss.backward()
    # d/dV of ½(V − R)²/3 where the unclipped term counts; none through the clipped token 0
    assert torch.allclose(values.grad, torch.tensor([0.0, -1.1 / 3, 0.5 / 3]))


def test_a_value_clip_of_zero_means_unclipped():
    values = torch.tensor([[0.5, -0.1]], requires_grad=True)
    loss, stats = value_loss(values, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2),
                             clip=0.0)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 1.21) / 2)
    assert stats["value/clip_fraction"].item() == 0
    loss.backward()
    assert torch.allclose(values.grad, torch.tensor([[-0.5 / 2, -1.1 / 2]]))


def test_micro_batch_value_losses_add_up_to_the_token_mean_of_the_step():
    values = torch.tensor([[0.5, 0.2, 0.0], [1.5, 9.0, 9.0]])
    returns = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    whole, _ = value_loss(values, values, returns, mask, clip=0.2)
    parts = [value_loss(values[[i]], values[[i]], returns[[i]], mask[[i]], clip=0.2,
                        step_tokens=3)[0] for i in range(2)]
    assert whole.item() == pytest.approx(0.5 * (0.25 + 0.04 + 0.25) / 3)
    assert sum(parts).item() == pytest.approx(whole.item())


def test_explained_variance_is_one_for_exact_values_and_zero_for_the_mean():
    returns = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    mean = torch.full_like(returns, 2.5)
    assert explained_variance(mean, returns, mask).item() == pytest.approx(0.0, abs=1e-6)


def _left_padded_batch(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask (2, 4 + 3): prompts of 4 and 3 tokens (left padded), 3
    completion tokens each."""
    input_ids = torch.randint(1, vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(2, 7, dtype=torch.long)
    attention_mask[1, 0] = 0
    input_ids[1, 0] = 0
    return input_ids, attention_mask


def test_each_value_comes_from_the_hidden_state_that_predicts_its_token(tiny_model):
    model, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    head = ValueHead(model.config.hidden_size)
    input_ids, attention_mask = _left_padded_batch(model.config.vocab_size)
    logp, entropy, values = logprobs_entropy_and_values(model, head, input_ids, attention_mask,
                                                        3, temperature=0.7)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids).last_hidden_state  # (2, 7, H)
    assert torch.allclose(values, head(hidden[:, 3:6]), atol=1e-5)  # positions P − 1 + t
    expected_logp, expected_entropy = completion_logprobs(model, input_ids, attention_mask, 3,
                                                          temperature=0.7)
    assert torch.allclose(logp, expected_logp, atol=1e-5)
    assert torch.allclose(entropy, expected_entropy, atol=1e-5)


def test_a_tokens_value_does_not_see_the_token(tiny_model):
    model, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    head = ValueHead(model.config.hidden_size)
    input_ids, attention_mask = _left_padded_batch(model.config.vocab_size)
    changed = input_ids.clone()
    changed[:, 5] = (changed[:, 5] + 1) % model.config.vocab_size  # completion token t = 1
    with torch.no_grad():
        _, _, values = logprobs_entropy_and_values(model, head, input_ids, attention_mask, 3, 1.0)
        _, _, other = logprobs_entropy_and_values(model, head, changed, attention_mask, 3, 1.0)
    assert torch.allclose(values[:, :2], other[:, :2])  # V(s_0), V(s_1): before token 1
    assert not torch.allclose(values[:, 2], other[:, 2])  # V(s_2) has seen it


def test_the_value_loss_trains_the_head_and_the_shared_backbone(tiny_model):
    model, _ = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    head = ValueHead(model.config.hidden_size)
    input_ids, attention_mask = _left_padded_batch(model.config.vocab_size)
    _, _, values = logprobs_entropy_and_values(model, head, input_ids, attention_mask, 3, 1.0)
    loss, _ = value_loss(values, values.detach(), torch.ones(2, 3), torch.ones(2, 3), clip=0.2)
    loss.backward()
    assert head.score.weight.grad.abs().sum() > 0 and head.score.bias.grad.abs().sum() > 0
    assert model.model.layers[-1].mlp.down_proj.weight.grad.abs().sum() > 0
