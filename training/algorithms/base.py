"""The interface every policy-optimisation algorithm implements, in its own file: how a scored
batch becomes advantages, what the loss adds to the clipped surrogate, what happens after an
update, the state a checkpoint keeps and the metrics each part reports.

The online loop (training.loops.online) calls these hooks in this order, and knows no algorithm
by name:

    __init__(config)                   its settings: config.algorithm_settings
    prompt_sampler(task, tokenizer)    a sampler of its own (RMT's token curriculum), or None
    parameter_groups(model)            extra optimiser groups (PPO's value head)
    load_state_dict(state, tensors)    on resume, from the checkpoint
    setup(run)                         once per process, fresh or resumed, before the rollout
                                       backend starts (KDRL's teacher)
    prepare(run)                       once, before the first step of a fresh run (SPO's prior)
    prompt_pool(task)                  then: the prompts the steps draw from (DPH-RL's unsolved)
    each step:
        advantages(scored, run)        sets scored.batch.advantages; returns metrics
        forward(...), extra_loss(...)  inside every micro-batch of every update pass
        auxiliary_backward(model)      once per update pass, before the optimiser step
        after_update(scored, run)      after the optimiser steps; returns metrics
    state_dict()                       into every checkpoint

An offline algorithm (`offline = True`, DPO) trains on preference pairs with its own loop
(training.loops.offline) instead; its class still names it and carries its loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch

from training.ops import KL_ESTIMATORS, masked_sum
from training.rollouts.generation import Rollouts
from training.rollouts.logprobs import TokenForward, batch_logprobs, completion_forward
from training.spec.config import RunConfig


@dataclass
class StepBatch:
    """One step's rollouts and what the loss needs of them beyond the policy's own log-probs."""

    rollouts: Rollouts
    advantages: torch.Tensor  # (N,) one per completion, or (N, T) one per token (PPO)
    old_logp: torch.Tensor | None = None  # (N, T) π_old's, when computed before the update
    ref_logp: torch.Tensor | None = None  # (N, T) π_ref's, likewise
    # What an algorithm's extra loss reads, by name: PPO's V_old and returns R_t, (N, T) each.
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    # Per-token values the token view shows beside the advantage, (N, T) each, by name:
    # GTPO's "conflict" (1 on a conflict token), PRL's "process" (its process term).
    token_views: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ScoredBatch:
    """A step's rollouts once scored: what an algorithm turns into advantages."""

    batch: StepBatch  # its advantages (and π_old, π_ref log-probs, targets) are filled in
    rewards: torch.Tensor  # (N,) the weighted sum of the reward functions, on the CPU
    prompt_ids: list[str]  # (N,) the prompt of each completion
    beta: float  # β of the KL penalty this step (adaptive KL moves it)


class OnlineRun(Protocol):
    """What the hooks may use of the run that calls them (training.loops.online)."""

    config: RunConfig
    model: torch.nn.Module
    reference: Any  # training.policies.references.Reference, or None without a KL reference
    tokenizer: Any
    device: torch.device
    backend: Any  # training.rollouts.generation's RolloutBackend
    reporter: Any  # training.spec.events.Reporter
    task: Any  # training.spec.tasks.Task: the prompts trained on
    reward_functions: dict[str, Any]  # name -> reward function
    weights: dict[str, float]  # name -> weight in the reward


@dataclass
class LossTerms:
    """An algorithm's own loss for one micro-batch, added to the policy loss: `sums` add up over
    micro-batches (loss/value), `means` are token means (value/clip_fraction)."""

    loss: torch.Tensor
    sums: dict[str, float] = field(default_factory=dict)
    means: dict[str, torch.Tensor] = field(default_factory=dict)


class Algorithm:
    """An online policy-gradient method whose loss is GRPO's clipped surrogate
    (training.algorithms.grpo.compute_loss, with the run's variants): a subclass says how
    rewards become advantages, in `estimate` or, for more than one advantage per completion, in
    `advantages`; every other hook has a default that does nothing."""

    offline: ClassVar[bool] = False
    # Per-prompt success estimates that a prompt sampler may draw on (SPO's value tracker).
    prompt_values: Any = None

    def __init__(self, config: RunConfig):
        self.config = config
        self.settings = config.algorithm_settings

    def parameter_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Optimiser groups beyond the policy's own trainable weights."""
        return []

    def setup(self, run: OnlineRun) -> None:
        """Once per process, whether the run is fresh or resumes, after the policy, reference
        and optimiser are ready and before the rollout backend starts: models of the algorithm's
        own that no checkpoint holds (KDRL's teacher). A problem the user can fix raises one of
        the online loop's SETUP_ERRORS, so that the run reports it as such."""

    def prompt_sampler(self, task: Any, tokenizer: Any) -> Any:
        """A prompt sampler of the algorithm's own (training.samplers' PromptSampler) over
        `task`, used instead of the run's prompt_sampler: RMT draws next-token questions from a
        text corpus by its entropy curriculum. None (the default): the run's. Called once the
        tokenizer is loaded, before a checkpoint's state is restored."""
        return None

    def prepare(self, run: OnlineRun) -> None:
        """Once, before the first step of a run that does not resume."""

    def prompt_pool(self, task: Any) -> Any:
        """The prompts the steps sample from: `task` (training.samplers.PromptSource) or a part
        of it, as `prepare` or the restored state decided (DPH-RL leaves out the prompts that
        the initial policy already solves). Called once, after either."""
        return task

    def advantages(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        """Set scored.batch.advantages from the rewards; return metrics. With the KL in the
        reward, each completion's is taken off first: r − β Σ_t KL_t, its KL summed over its
        tokens (π_old's log-probs are computed here then, and kept for the update)."""
        config, batch = self.config, scored.batch
        metrics: dict[str, float] = {}
        shaped = scored.rewards  # (N,)
        if run.reference is not None and config.kl_placement == "reward":
            started = time.perf_counter()
            batch.old_logp = batch_logprobs(run.model, batch.rollouts, config)
            batch.ref_logp = batch_logprobs(run.reference.model, batch.rollouts, config)
            kl = KL_ESTIMATORS[config.kl_estimator](batch.old_logp, batch.ref_logp)  # (N, T)
            sequence_kl = masked_sum(kl, batch.rollouts.completion_mask, dim=1).cpu()  # (N,)
            shaped = scored.rewards - scored.beta * sequence_kl
            metrics["kl/sequence_mean"] = sequence_kl.mean().item()
            metrics["reward/shaped_mean"] = shaped.mean().item()
            metrics["time/kl_reward_s"] = time.perf_counter() - started
        batch.advantages = self.estimate(shaped, scored.prompt_ids)
        return metrics

    def estimate(self, rewards: torch.Tensor, prompt_ids: list[str]) -> torch.Tensor:
        """rewards (N,), ordered group by group -> advantages (N,)."""
        raise NotImplementedError(f"{type(self).__name__} must define estimate or advantages")

    def forward(self, model: torch.nn.Module, input_ids: torch.Tensor,
                attention_mask: torch.Tensor, completion_length: int, temperature: float, *,
                entropy_grad: bool = False) -> TokenForward:
        """The policy's forward pass over a micro-batch: log-probs and entropies (n, T), and
        whatever else the algorithm's loss reads of the same pass."""
        return completion_forward(model, input_ids, attention_mask, completion_length,
                                  temperature, entropy_grad=entropy_grad)

    def extra_loss(self, forward: TokenForward, batch: StepBatch, rows: torch.Tensor,
                   mask: torch.Tensor, step_tokens: int) -> LossTerms | None:
        """A loss of the algorithm's own for micro-batch `rows` (mask (n, T'): its completion
        tokens), already weighted, as its share of the step: `step_tokens` completion tokens."""
        return None

    def auxiliary_backward(self, model: torch.nn.Module) -> dict[str, float]:
        """Once per optimisation pass, after the rollouts' micro-batches and before the gradient
        is clipped and the optimiser steps: a loss on data of the algorithm's own (DPH-RL's
        stored samples of the initial policy, RMT's next-token loss on the text), computed and
        backpropagated here in micro-batches of its own, so that its gradient adds to the
        rollouts'. Returns metrics (one value per pass)."""
        return {}

    def after_update(self, scored: ScoredBatch, run: OnlineRun) -> dict[str, float]:
        """After the step's optimiser steps and weight sync; returns metrics."""
        return {}

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What a checkpoint keeps to go on exactly: JSON state, and tensors (by top-level key,
        beside the optimiser's in the checkpoint)."""
        return {}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        """Restore what `state_dict` gave, from a checkpoint's JSON state and tensors."""
