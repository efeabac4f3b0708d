"""How per-token losses ℓ_i,t become the step's loss: the normalisers of GRPO and its variants.

Each function returns one micro-batch's share of the step loss, so that summing the shares of
all micro-batches (gradient accumulation) gives the loss of the whole batch. With m_i,t the mask
of completion tokens, N completions in the step, L the longest allowed completion and K
micro-batches k:

    grpo     L = 1/N Σ_i 1/|o_i| Σ_t ℓ_i,t             token mean per sequence, then mean
    bnpo     L = 1/K Σ_k (Σ_(i,t)∈k ℓ_i,t / Σ_(i,t)∈k m_i,t)   token mean of each local batch
    dapo     L = Σ_i Σ_t ℓ_i,t / Σ_i Σ_t m_i,t          token mean over the global batch (DAPO)
    dr_grpo  L = Σ_i Σ_t ℓ_i,t / (N · L)                constant normaliser (Dr. GRPO)

grpo weighs a short completion's tokens more than a long one's; dapo and dr_grpo weigh every
token alike, dr_grpo without the length of the batch in the denominator. (TRL's _compute_loss
has the same four; there "local batch" is a device's batch, here it is a micro-batch.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from training.ops import masked_mean, masked_sum


@dataclass(frozen=True)
class BatchShape:
    sequences: int  # N: completions in the step
    tokens: int  # Σ m_i,t over the step
    max_completion_length: int  # L: the max_new_tokens setting
    micro_batches: int  # K


def grpo(per_token: torch.Tensor, mask: torch.Tensor, shape: BatchShape) -> torch.Tensor:
    return masked_mean(per_token, mask, dim=1).sum() / shape.sequences


def bnpo(per_token: torch.Tensor, mask: torch.Tensor, shape: BatchShape) -> torch.Tensor:
    return masked_mean(per_token, mask) / shape.micro_batches


def dapo(per_token: torch.Tensor, mask: torch.Tensor, shape: BatchShape) -> torch.Tensor:
    return masked_sum(per_token, mask) / max(shape.tokens, 1)


def dr_grpo(per_token: torch.Tensor, mask: torch.Tensor, shape: BatchShape) -> torch.Tensor:
    return masked_sum(per_token, mask) / (shape.sequences * shape.max_completion_length)


Aggregation = Callable[[torch.Tensor, torch.Tensor, BatchShape], torch.Tensor]
AGGREGATIONS: dict[str, Aggregation] = {"grpo": grpo, "bnpo": bnpo, "dapo": dapo,
                                        "dr_grpo": dr_grpo}
