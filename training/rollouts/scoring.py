"""Scoring rollouts with reward functions, for training steps and evaluations alike."""

from __future__ import annotations

from collections.abc import Callable

import torch

from training.spec.config import RunConfig
from training.rollouts.generation import Rollouts
from training.spec.tasks import Example


def score_rollouts(reward_functions: dict[str, Callable[..., list[float]]],
                   examples: list[Example], rollouts: Rollouts,
                   config: RunConfig) -> dict[str, torch.Tensor]:
    """Each reward function's scores (N,). Functions get every example's columns repeated for
    its group, the completions' token counts, and the run's length settings."""
    group_size = config.group_size
    prompts = [ex.prompt for ex in examples for _ in range(group_size)]
    columns = {key: [ex.columns[key] for ex in examples for _ in range(group_size)]
               for key in examples[0].columns}
    columns.update(completion_tokens=rollouts.lengths.tolist(),
                   max_new_tokens=config.max_new_tokens,
                   token_budget=config.token_budget or config.max_new_tokens)
    return {name: torch.tensor(fn(prompts, rollouts.texts, **columns), dtype=torch.float32)
            for name, fn in reward_functions.items()}
