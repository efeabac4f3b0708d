import math

import pytest
import torch

from training.algorithms.grpo import compute_advantages, compute_loss


def test_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 2.0, 2.0])
    advantages = compute_advantages(rewards, group_size=4, eps=0.0)
    # group 1: mean 0.25, unbiased std 0.5;  group 2: mean 2, unbiased std sqrt(2/3)
    s = math.sqrt(2 / 3)
    expected = [1.5, -0.5, -0.5, -0.5, 1 / s, -1 / s, 0.0, 0.0]
    assert torch.allclose(advantages, torch.tensor(expected), atol=1e-6)


def test_a_group_with_equal_rewards_gets_zero_advantages():
    advantages = compute_advantages(torch.tensor([1.0, 1.0, 0.0, 1.0]), group_size=2, eps=1e-4)
    assert advantages[:2].tolist() == [0.0, 0.0]
    assert advantages[2] < 0 < advantages[3]


def _loss(logp, old_logp, advantages, mask=None, ref_logp=None, epsilon=0.2, beta=0.0,
          **options):
    mask = torch.ones_like(logp) if mask is None else mask
    return compute_loss(logp, old_logp, ref_logp, advantages, mask, epsilon_low=epsilon,
                        epsilon_high=options.pop("epsilon_high", epsilon), beta=beta, **options)


def test_loss_at_ratio_one_is_minus_the_mean_advantage():
    logp = torch.full((2, 3), -1.0)
    loss, stats = _loss(logp, logp.clone(), torch.tensor([0.5, -1.5]))
    assert loss.item() == pytest.approx(0.5)
    assert stats["clip/low_fraction"] == 0 and stats["clip/high_fraction"] == 0
    assert "kl/mean" not in stats


def test_loss_is_a_token_mean_per_sequence_then_a_mean_over_sequences():
    # ratio 1 everywhere; per-token loss = −Â, so vary Â and the lengths
    logp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    loss, _ = _loss(logp, logp.clone(), torch.tensor([1.0, 3.0]), mask=mask)
    assert loss.item() == pytest.approx((-1.0 + -3.0) / 2)  # not (4·−1 + 1·−3) / 5


def test_clipping_cuts_the_gradient_on_both_sides():
    # Ratios 1.5 and 0.5 with ε = 0.2, for a positive and a negative advantage.
    ratios = torch.tensor([[1.5], [0.5], [1.5], [0.5]])
    old_logp = torch.full((4, 1), -2.0)
    logp = (old_logp + ratios.log()).requires_grad_()
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, stats = _loss(logp, old_logp, advantages)
    # per token −min(ρÂ, clip(ρ)Â): −1.2 (high clip), 0.8 (low clip), 1.5 and −0.5 (unclipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8 + 1.5 - 0.5) / 4)
    assert stats["clip/high_fraction"].item() == pytest.approx(0.25)
    assert stats["clip/low_fraction"].item() == pytest.approx(0.25)
    loss.backward()
    # d/dlogp of −ρÂ/4 is −ρÂ/4 on the unclipped tokens, 0 on the clipped ones
    expected = torch.tensor([[0.0], [0.0], [1.5 / 4], [-0.5 / 4]])
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_kl_penalty_adds_beta_times_k3():
    logp = torch.zeros(1, 2)
    ref_logp = torch.tensor([[math.log(2), 0.0]])  # k3 = 1 − ln 2, then 0
    loss, stats = _loss(logp, logp.clone(), torch.tensor([0.0]), ref_logp=ref_logp, beta=0.5)
    k3 = 1 - math.log(2)
    assert loss.item() == pytest.approx(0.5 * k3 / 2)
    assert stats["kl/mean"].item() == pytest.approx(k3 / 2)


def test_masked_tokens_do_not_count():
    logp = torch.tensor([[0.0, 5.0]])
    old_logp = torch.tensor([[0.0, 0.0]])
    loss, stats = _loss(logp, old_logp, torch.tensor([2.0]), mask=torch.tensor([[1, 0]]))
    assert loss.item() == pytest.approx(-2.0)
    assert stats["clip/high_fraction"].item() == 0.0


def test_rewards_can_be_scaled_by_the_batch_std_or_not_at_all():
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0])
    batch_std = rewards.std().item()  # unbiased, over all four
    by_batch = compute_advantages(rewards, group_size=2, eps=0.0, scale="batch")
    unscaled = compute_advantages(rewards, group_size=2, eps=0.0, scale="none")
    assert unscaled.tolist() == [0.5, -0.5, 1.0, -1.0]
    expected = torch.tensor([0.5, -0.5, 1.0, -1.0]) / batch_std
    assert torch.allclose(by_batch, expected)


def test_clip_higher_lets_positive_ratios_grow_further_than_the_lower_bound():
    # ε_low 0.2, ε_high 0.28: ratio 1.25 is inside, 1.5 is clipped at 1.28
    old_logp = torch.zeros(2, 1)
    logp = torch.log(torch.tensor([[1.25], [1.5]]))
    loss, stats = _loss(logp, old_logp, torch.tensor([1.0, 1.0]), epsilon_high=0.28)
    assert loss.item() == pytest.approx(-(1.25 + 1.28) / 2)
    assert stats["clip/high_fraction"].item() == pytest.approx(0.5)


def test_sequence_level_ratio_is_the_geometric_mean_of_the_token_ratios():
    # token log-ratios 0.3 and −0.1: GSPO's ρ = exp(0.1) for both tokens
    old_logp = torch.zeros(1, 2)
    logp = torch.tensor([[0.3, -0.1]], requires_grad=True)
    loss, _ = _loss(logp, old_logp, torch.tensor([1.0]), epsilon=0.5,
                    importance_level="sequence")
    assert loss.item() == pytest.approx(-math.exp(0.1))
    loss.backward()
    # d/dlogp_t of −exp(mean log ρ) = −ρ / |o| for each token
    assert torch.allclose(logp.grad, torch.full((1, 2), -math.exp(0.1) / 2))


@pytest.mark.parametrize("estimator,expected", [
    ("k1", -math.log(2)),  # π_ref = 2π for the sampled token
    ("k2", 0.5 * math.log(2) ** 2),
    ("k3", 1 - math.log(2)),
])
def test_kl_estimators(estimator, expected):
    logp = torch.zeros(1, 1)
    ref_logp = torch.tensor([[math.log(2)]])
    _, stats = _loss(logp, logp.clone(), torch.tensor([0.0]), ref_logp=ref_logp, beta=1.0,
                     kl_estimator=estimator)
    assert stats["kl/mean"].item() == pytest.approx(expected)


def test_entropy_bonus_subtracts_alpha_times_the_entropy_and_pushes_it_up():
    logp = torch.zeros(1, 2)
    entropy = torch.tensor([[1.0, 3.0]], requires_grad=True)
    loss, _ = _loss(logp, logp.clone(), torch.tensor([0.0]), entropy=entropy, entropy_coef=0.1)
    assert loss.item() == pytest.approx(-0.1 * 2.0)  # −α · token mean of H
    loss.backward()
    assert torch.allclose(entropy.grad, torch.full((1, 2), -0.05))  # descent raises H


def test_policy_mask_keeps_the_gradient_to_the_chosen_tokens_and_kl_to_all():
    logp = torch.zeros(1, 2, requires_grad=True)
    ref_logp = torch.tensor([[math.log(2), math.log(2)]])
    policy_mask = torch.tensor([[1.0, 0.0]])
    loss, _ = _loss(logp, logp.detach().clone(), torch.tensor([1.0]), ref_logp=ref_logp,
                    beta=0.5, policy_mask=policy_mask)
    k3 = 1 - math.log(2)
    assert loss.item() == pytest.approx((-1.0 + 0.0) / 2 + 0.5 * k3)


def test_the_kl_bias_correction_weighs_k3_by_the_ratio_and_its_gradient():
    # One token, Â = 0, π_old = π_θ: the loss is β·k3·ρ with ρ = 1, and its gradient with
    # respect to log π is β·(dk3/dlog π + k3) = β·(1 − π_ref/π + k3): the reverse KL's
    # score-function gradient, where k3 alone gives β·(1 − π_ref/π).
    logp = torch.tensor([[-1.0]], requires_grad=True)
    ref = torch.tensor([[-1.5]])
    k3 = math.exp(-0.5) - (-0.5) - 1
    for correction, expected in ((False, 1 - math.exp(-0.5)), (True, 1 - math.exp(-0.5) + k3)):
        logp.grad = None
        loss, stats = compute_loss(logp, logp.detach(), ref, torch.zeros(1), torch.ones(1, 1),
                                   epsilon_low=0.2, epsilon_high=0.2, beta=0.5,
                                   kl_bias_correction=correction)
        loss.backward()
        assert loss.item() == pytest.approx(0.5 * k3)
        assert logp.grad.item() == pytest.approx(0.5 * expected)
        assert stats["kl/mean"].item() == pytest.approx(k3)
