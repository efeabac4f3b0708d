"""A training step's logged rollouts, as the event protocol's records
(training.spec.events.RolloutRecord), with the per-token view of the first few."""

from __future__ import annotations

from typing import Any

import torch

from training.rollouts.generation import Rollouts
from training.spec.config import RunConfig
from training.spec.events import RolloutRecord
from training.spec.tasks import Example


def rollout_records(examples: list[Example], rollouts: Rollouts,
                    per_function: dict[str, torch.Tensor], rewards: torch.Tensor,
                    advantages: torch.Tensor, token_advantages: torch.Tensor, config: RunConfig,
                    token_details: dict[int, dict[str, list[float]]], tokenizer,
                    token_views: dict[str, torch.Tensor] | None = None,
                    ) -> list[dict[str, Any]]:
    """The logged rollouts; `advantages` (N,) one per completion, `token_advantages` (N,) or
    (N, T), the per-token ones of the token view (PPO's differ token by token), and the
    algorithm's own per-token values for it, (N, T) each by name (`token_views`)."""
    count = min(config.rollouts_logged_per_step, len(rollouts.texts))
    prompt_length = rollouts.input_ids.shape[1] - rollouts.completion_mask.shape[1]
    groups = rewards.view(-1, config.group_size)  # (B, G)
    degenerate = ((groups.max(1).values == groups.min(1).values).tolist()
                  if config.group_size > 1 else [False] * len(groups))  # (B,)
    records = []
    for i in range(count):
        example = examples[i // config.group_size]
        tokens = None
        if i in token_details:
            ids = rollouts.input_ids[i, prompt_length:prompt_length + int(rollouts.lengths[i])]
            n = len(ids)
            per_token = (token_advantages[i, :n] if token_advantages.dim() == 2
                         else token_advantages[i].expand(n))
            tokens = {"text": [tokenizer.decode([t]) for t in ids.tolist()],
                      "advantage": [round(v, 4) for v in per_token.tolist()],
                      **token_details[i],
                      **{name: [round(v, 4) for v in values[i, :n].tolist()]
                         for name, values in (token_views or {}).items()}}
        records.append(RolloutRecord(
            prompt=example.prompt, completion=rollouts.texts[i], reward=rewards[i].item(),
            rewards={name: values[i].item() for name, values in per_function.items()},
            advantage=advantages[i].item(), group=i // config.group_size,
            sample_index=i % config.group_size, prompt_id=example.prompt_id,
            completion_tokens=int(rollouts.lengths[i]), truncated=bool(rollouts.truncated[i]),
            group_degenerate=degenerate[i // config.group_size], extra=dict(example.columns),
            tokens=tokens).as_dict())
    return records
