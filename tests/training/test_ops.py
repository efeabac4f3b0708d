import math

import pytest
import torch

from training.ops import (
    high_entropy_mask,
    kl_k3,
    masked_mean,
    masked_sum,
    token_logprobs_and_entropy,
)


def test_masked_mean_ignores_masked_entries():
    x = torch.tensor([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, mask).item() == pytest.approx((1 + 2 + 4) / 3)
    assert masked_mean(x, mask, dim=1).tolist() == [1.5, 4.0]


def test_masked_mean_of_an_all_masked_row_is_zero():
    x = torch.tensor([[3.0, 5.0]])
    assert masked_mean(x, torch.zeros(1, 2), dim=1).tolist() == [0.0]


def test_masked_sum_over_rows_and_all():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    assert masked_sum(x, mask).item() == 8.0
    assert masked_sum(x, mask, dim=1).tolist() == [1.0, 7.0]


def test_kl_k3_matches_hand_values():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    ref = torch.tensor([-1.0, -2.0 + math.log(2), -0.5 - math.log(2)])
    # d = ref − logp: 0 → 0;  ln 2 → 2 − ln 2 − 1;  −ln 2 → 1/2 + ln 2 − 1
    expected = [0.0, 1 - math.log(2), math.log(2) - 0.5]
    assert torch.allclose(kl_k3(logp, ref), torch.tensor(expected), atol=1e-6)


def test_kl_k3_is_never_negative():
    torch.manual_seed(0)
    assert (kl_k3(torch.randn(1000), torch.randn(1000)) >= 0).all()


def test_token_logprobs_match_full_log_softmax_across_chunks():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    targets = torch.randint(0, 11, (3, 5))
    logp, entropy = token_logprobs_and_entropy(logits, targets, chunk_rows=4)
    full = logits.log_softmax(-1)
    assert torch.allclose(logp, full.gather(-1, targets[..., None]).squeeze(-1), atol=1e-6)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1), atol=1e-5)
    logp.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_entropy_of_uniform_logits_is_log_vocab():
    targets = torch.zeros(1, 2, dtype=torch.long)
    _, entropy = token_logprobs_and_entropy(torch.zeros(1, 2, 8), targets)
    assert torch.allclose(entropy, torch.full((1, 2), math.log(8)))


def test_high_entropy_mask_doctest_and_edges():
    import doctest

    import training.ops

    assert doctest.testmod(training.ops).failed == 0
    mask = torch.tensor([[1, 1, 0]])
    entropy = torch.tensor([[0.3, 0.1, 9.0]])
    assert high_entropy_mask(entropy, mask, 1.0).tolist() == [[1, 1, 0]]
    assert high_entropy_mask(entropy, torch.zeros(1, 3), 0.2).tolist() == [[0, 0, 0]]


def test_entropy_carries_a_gradient_only_when_asked():
    logits = torch.randn(1, 2, 5, requires_grad=True)
    targets = torch.tensor([[0, 1]])
    _, detached = token_logprobs_and_entropy(logits, targets)
    assert not detached.requires_grad
    _, entropy = token_logprobs_and_entropy(logits, targets, entropy_grad=True)
    assert torch.allclose(entropy, detached)
    entropy.sum().backward()
    assert logits.grad.abs().sum() > 0
