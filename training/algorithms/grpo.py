"""GRPO (Shao et al., 2024, DeepSeekMath) and its loss variants: group-normalised advantages,
clipped policy gradient.

For each prompt, G completions o_1..o_G are sampled and scored r_1..r_G. Every token of o_i gets
the same advantage, the reward centred on its group's mean and scaled:

    Â_i = (r_i − mean(r_1..r_G)) / (std + eps)

where std is the group's (GRPO), the whole batch's (as in REINFORCE++ and Dr. GRPO's analysis),
or 1 (no scaling, Dr. GRPO). The policy minimises the clipped surrogate with asymmetric bounds
(DAPO's clip-higher), optionally plus a KL penalty to a reference policy:

    ρ_i,t = π_θ(o_i,t | q, o_i,<t) / π_old(o_i,t | q, o_i,<t)           token-level, or
    ρ_i   = exp(1/|o_i| Σ_t log ρ_i,t), the same for every token of o_i  sequence-level (GSPO)
    ℓ_i,t = −min(ρ Â_i, clip(ρ, 1 − ε_low, 1 + ε_high) Â_i) + β KL_i,t − α H_i,t

where KL_i,t may be weighted by ρ_i,t (the bias correction of TRL and DeepSeek-V3.2, under
which k1 and k3 give the reverse KL's gradient; k3 alone gives the forward KL's, k1 alone none),
and the per-token losses are aggregated as in training.algorithms.aggregation (grpo, bnpo, dapo,
dr_grpo), where H is the entropy of the policy's next-token distribution (an entropy bonus
when α > 0). Completions cut off at the token limit can be left out of the loss (DAPO's overlong
filtering), and the policy-gradient term can be kept to the highest-entropy tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.aggregation import AGGREGATIONS, BatchShape
from training.algorithms.base import Algorithm
from training.ops import KL_ESTIMATORS, masked_mean
from training.spec.config import RunConfig


# The std that centred rewards are divided by, from the (B, G) rewards.
REWARD_SCALES = {
    "group": lambda grouped: grouped.std(dim=1, keepdim=True),  # (B, 1)
    "batch": lambda grouped: grouped.std(),  # ()
    "none": lambda grouped: None,
}


@dataclass(frozen=True)
class GRPOConfig:
    group_size: int  # G: completions per prompt; advantages are centred within each group
    epsilon_low: float  # ε_low: ρ is clipped below at 1 − ε_low
    epsilon_high: float  # ε_high: ρ is clipped above at 1 + ε_high
    beta: float  # β: weight of the KL penalty to the reference policy (0 = no reference)
    kl_estimator: str = "k3"  # k1, k2 or k3 (training.ops)
    kl_bias_correction: bool = False  # KL_i,t × ρ_i,t in the loss (TRL's use_bias_correction_kl)
    loss_type: str = "grpo"  # aggregation of per-token losses: grpo, bnpo, dapo, dr_grpo
    importance_level: str = "token"  # token: ρ_i,t; sequence: GSPO's ρ_i
    mask_truncated: bool = False  # leave completions that hit the token limit out of the loss
    std_eps: float = 1e-4  # eps: keeps Â finite when a group's rewards are all equal

    @classmethod
    def from_run_config(cls, config: RunConfig) -> GRPOConfig:
        return cls(group_size=config.group_size, epsilon_low=config.epsilon,
                   epsilon_high=config.epsilon_high or config.epsilon, beta=config.beta,
                   kl_estimator=config.kl_estimator,
                   kl_bias_correction=config.kl_bias_correction, loss_type=config.loss_type,
                   importance_level=config.importance_level,
                   mask_truncated=config.mask_truncated)


class GRPO(Algorithm):
    """Group-normalised advantages; its settings: which std divides them (GRPOSettings)."""

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        return compute_advantages(rewards, self.config.group_size,
                                  scale=self.settings.scale_rewards)


def compute_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4,
                       scale: str = "group") -> torch.Tensor:
    """Â_i = (r_i − mean_g) / (std + eps), centred on each prompt's group.

    rewards (B*G,) ordered group by group -> advantages (B*G,). `scale` picks std: the group's
    unbiased sample std ("group", as in DeepSeekMath and TRL), the whole batch's ("batch"), or
    none at all ("none": Â_i = r_i − mean_g). A group whose rewards are all equal carries no
    signal and gets advantages of exactly 0.
    """
    grouped = rewards.view(-1, group_size)  # (B, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # (B, G)
    std = REWARD_SCALES[scale](grouped)  # (B, 1), (), or None
    if std is not None:
        centred = centred / (std + eps)
    return centred.reshape(-1)  # (B*G,)


def compute_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                 advantages: torch.Tensor, mask: torch.Tensor, *, epsilon_low: float,
                 epsilon_high: float, beta: float = 0.0, kl_estimator: str = "k3",
                 importance_level: str = "token", loss_type: str = "grpo",
                 shape: BatchShape | None = None, entropy: torch.Tensor | None = None,
                 entropy_coef: float = 0.0, policy_mask: torch.Tensor | None = None,
                 kl_bias_correction: bool = False,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective of the module docstring, as a loss to minimise, for one micro-batch.

    logp, old_logp, ref_logp, mask, entropy (n, T); advantages (n,), one per completion as in
    GRPO, or (n, T), one per token as PPO's GAE gives. `entropy` must carry
    its gradient when entropy_coef (α) is not 0. `policy_mask` (n, T), if given, keeps the
    policy-gradient term to its tokens (high_entropy_mask); KL and entropy terms keep all of
    `mask`. With `kl_bias_correction`, the KL term is KL_i,t · ρ_i,t, ρ carrying its gradient
    (TRL's use_bias_correction_kl): E_π_old[ρ ∇k + k ∇ρ] is then the reverse KL's gradient
    for k1 and k3 alike, in every pass. `shape` describes the whole step
    for the aggregation; None means this micro-batch is the whole step. Returns the micro-batch's
    share of the step loss and detached token means of: clip/low_fraction (ρ < 1 − ε_low with
    Â < 0, the gradient cut by the lower bound), clip/high_fraction (ρ > 1 + ε_high with Â > 0),
    and kl/mean when there is a reference.
    """
    mask = mask.to(logp.dtype)
    if shape is None:
        shape = BatchShape(sequences=mask.shape[0], tokens=int(mask.sum().item()),
                           max_completion_length=mask.shape[1], micro_batches=1)
    if advantages.dim() == 1:
        advantages = advantages[:, None]  # (n, 1), broadcast over tokens
    log_ratio = logp - old_logp  # (n, T)
    if importance_level == "sequence":
        log_ratio = masked_mean(log_ratio, mask, dim=1)[:, None].expand_as(logp)  # (n, T)
    elif importance_level != "token":
        raise ValueError(f"unknown importance level {importance_level!r}")
    ratio = torch.exp(log_ratio)  # (n, T)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # (n, T)
    per_token = -torch.min(ratio * advantages, clipped * advantages)  # (n, T)
    if policy_mask is not None:
        per_token = per_token * policy_mask
    stats = {}
    if ref_logp is not None:
        kl = KL_ESTIMATORS[kl_estimator](logp, ref_logp)  # (n, T)
        penalty = kl * ratio if kl_bias_correction else kl  # (n, T)
        per_token = per_token + beta * penalty
        stats["kl/mean"] = masked_mean(kl, mask).detach()
    if entropy_coef:
        per_token = per_token - entropy_coef * entropy
    loss = AGGREGATIONS[loss_type](per_token, mask, shape)
    low = (ratio < 1 - epsilon_low) & (advantages < 0)  # (n, T)
    high = (ratio > 1 + epsilon_high) & (advantages > 0)  # (n, T)
    stats["clip/low_fraction"] = masked_mean(low.to(mask.dtype), mask).detach()
    stats["clip/high_fraction"] = masked_mean(high.to(mask.dtype), mask).detach()
    return loss, stats
