"""GRPO (Shao et al., 2024, DeepSeekMath): group-normalised advantages, clipped policy gradient.

For each prompt, G completions o_1..o_G are sampled and scored r_1..r_G. Every token of o_i gets
the same advantage, the reward normalised within its group:

    Â_i = (r_i − mean(r_1..r_G)) / (std(r_1..r_G) + eps)

and the policy minimises the clipped surrogate, with an optional k3 KL penalty to a frozen
reference policy, averaged over the tokens of each completion and then over completions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.config import RunConfig
from training.ops import kl_k3, masked_mean


@dataclass(frozen=True)
class GRPOConfig:
    group_size: int  # G: completions per prompt; advantages are normalised within each group
    epsilon: float  # ε: clip range of the importance ratio, clip(ρ, 1 − ε, 1 + ε)
    beta: float  # β: weight of the k3 KL penalty to the reference policy (0 = no reference)
    std_eps: float = 1e-4  # eps: keeps Â finite when a group's rewards are all equal

    @classmethod
    def from_run_config(cls, config: RunConfig) -> GRPOConfig:
        return cls(group_size=config.group_size, epsilon=config.epsilon, beta=config.beta)


def compute_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Â_i = (r_i − mean_g) / (std_g + eps), with the statistics of each prompt's group.

    rewards (B*G,) ordered group by group -> advantages (B*G,). std is the unbiased sample
    standard deviation, as in DeepSeekMath and TRL; a group whose rewards are all equal carries no
    signal and gets advantages of exactly 0.
    """
    grouped = rewards.view(-1, group_size)  # (B, G)
    mean = grouped.mean(dim=1, keepdim=True)  # (B, 1)
    std = grouped.std(dim=1, keepdim=True)  # (B, 1)
    return ((grouped - mean) / (std + eps)).view(-1)  # (B*G,)


def compute_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                 advantages: torch.Tensor, mask: torch.Tensor, epsilon: float, beta: float,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO objective, as a loss to minimise:

        ρ_i,t = π_θ(o_i,t | q, o_i,<t) / π_θ_old(o_i,t | q, o_i,<t)
        ℓ_i,t = −min(ρ_i,t Â_i, clip(ρ_i,t, 1 − ε, 1 + ε) Â_i) + β k3_i,t
        L     = 1/N Σ_i  1/|o_i| Σ_t ℓ_i,t

    with k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1 (only when ref_logp is given).

    logp, old_logp, ref_logp, mask (N, T); advantages (N,). Returns the loss and detached token
    means of: clip/low_fraction (ρ < 1 − ε with Â < 0, the gradient cut by the lower bound),
    clip/high_fraction (ρ > 1 + ε with Â > 0), and kl/mean when there is a reference.
    """
    mask = mask.to(logp.dtype)
    advantages = advantages[:, None]  # (N, 1), broadcast over tokens
    ratio = torch.exp(logp - old_logp)  # (N, T)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)  # (N, T)
    per_token = -torch.min(ratio * advantages, clipped * advantages)  # (N, T)
    stats = {}
    if ref_logp is not None:
        kl = kl_k3(logp, ref_logp)  # (N, T)
        per_token = per_token + beta * kl
        stats["kl/mean"] = masked_mean(kl, mask).detach()
    loss = masked_mean(per_token, mask, dim=1).mean()  # token mean per sequence, then mean
    low = (ratio < 1 - epsilon) & (advantages < 0)  # (N, T)
    high = (ratio > 1 + epsilon) & (advantages > 0)  # (N, T)
    stats["clip/low_fraction"] = masked_mean(low.to(mask.dtype), mask).detach()
    stats["clip/high_fraction"] = masked_mean(high.to(mask.dtype), mask).detach()
    return loss, stats
