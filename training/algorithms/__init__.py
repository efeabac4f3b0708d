"""Policy-optimisation algorithms, one file each: a config, `compute_advantages`, `compute_loss`.

`advantages_for` maps a run's algorithm to its advantage estimator; RLOO and REINFORCE++ reuse
GRPO's clipped surrogate loss, so they differ from it only there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from training.algorithms import grpo, reinforce_pp, rloo

AdvantageEstimator = Callable[[torch.Tensor], torch.Tensor]


def advantages_for(algo: grpo.GRPOConfig, algorithm: str) -> AdvantageEstimator:
    """rewards (N,) -> advantages (N,) for `algorithm`, with the run's settings bound in."""
    estimators: dict[str, AdvantageEstimator] = {
        "grpo": lambda r: grpo.compute_advantages(r, algo.group_size, algo.std_eps,
                                                  scale=algo.scale_rewards),
        "rloo": lambda r: rloo.compute_advantages(r, algo.group_size),
        "reinforce_pp": lambda r: reinforce_pp.compute_advantages(r, algo.std_eps),
    }
    return estimators[algorithm]
