"""Tensor operations shared by the algorithms: masked reductions, KL estimators, token log-probs."""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x where mask is 1, over `dim` (all elements when None)."""
    masked = x * mask
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is 1; an all-masked row gives 0 rather than NaN."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k1 estimator of KL(π || π_ref), per sampled token: k1 = log π − log π_ref.

    Unbiased for samples from π but high-variance, and negative for some tokens.
    """
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k2 estimator, per sampled token: k2 = ½ (log π − log π_ref)².

    Biased, low-variance and never negative; its gradient is that of the reverse KL.
    """
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(π || π_ref), per sampled token:

        k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1

    Unbiased for samples from π, and never negative.
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature: those of the distribution sampled from (no copy at 1)."""
    return logits if temperature == 1.0 else logits / temperature


def token_logprobs_and_entropy(logits: torch.Tensor, targets: torch.Tensor,
                               chunk_rows: int = 1024, *, entropy_grad: bool = False,
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) with gradient, and the entropy H = −Σ_v p_v log p_v of each next-token
    distribution, detached unless `entropy_grad` (for an entropy bonus in the loss).

    logits (B, T, V), targets (B, T) -> logp (B, T) float32, entropy (B, T) float32.
    Rows are processed in chunks so that only a (chunk_rows, V) float32 temporary exists at a
    time instead of a full (B, T, V) log-softmax (with entropy_grad, autograd keeps them all).
    One fused log-softmax per chunk serves both (a logsumexp and a softmax take 1.6× as long).
    """
    batch, length, vocab = logits.shape
    flat_logits = logits.reshape(-1, vocab)  # (B*T, V)
    flat_targets = targets.reshape(-1)  # (B*T,)
    logps, entropies = [], []
    for start in range(0, flat_logits.shape[0], chunk_rows):
        log_probs = flat_logits[start:start + chunk_rows].float().log_softmax(dim=-1)  # (n, V)
        logps.append(log_probs.gather(-1, flat_targets[start:start + chunk_rows, None])
                     .squeeze(-1))
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropies.append(-(log_probs.exp() * log_probs).sum(-1))
    return (torch.cat(logps).view(batch, length), torch.cat(entropies).view(batch, length))


def high_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, top_fraction: float,
                      ) -> torch.Tensor:
    """1 on the `top_fraction` of masked tokens with the highest entropy, 0 elsewhere.

    entropy, mask (B, T) -> (B, T). The "forking tokens" of Wang et al. (2025): training on the
    top 20% highest-entropy tokens alone matches or beats training on all of them.

    >>> high_entropy_mask(torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 5.0]]),
    ...                   torch.tensor([[1, 1, 1], [1, 1, 0]]), 0.4)
    tensor([[0, 1, 0],
            [1, 0, 0]])
    """
    mask = mask.bool()
    values = entropy[mask]  # (M,) masked tokens only
    if values.numel() == 0 or top_fraction >= 1:
        return mask.long()
    threshold = torch.quantile(values.float(), 1 - top_fraction)
    return (mask & (entropy >= threshold)).long()


def zero_fraction(advantages: torch.Tensor, tol: float = 1e-6) -> float:
    """The fraction of advantages that are 0 (|Â| ≤ tol): completions (or tokens) with no
    learning signal. For GRPO these are the completions of degenerate groups (all rewards
    equal); SPO has almost none."""
    return (advantages.abs() <= tol).float().mean().item()
