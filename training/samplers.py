"""Prompt samplers: which prompts each step trains on (the run's `prompt_sampler`).

    uniform            the task's own `sample`: uniformly at random, distinct within a step
    difficulty_filter  uniform; the online loop keeps the prompts whose group pass rate is strictly
                       between the bounds (`in_bounds`) and refills the batch with new prompts
                       (DAPO's dynamic sampling)
    spo_priority       ∝ sqrt(v̂ (1 − v̂)) + ε from SPO's value tracker (training.algorithms.spo)
    curriculum         easiest first by the dataset's difficulty column, widening to all prompts
                       by the last step

A sampler owns its random generator, seeded with the run's seed, and its `state_dict` (JSON) holds
all it needs to go on exactly as an uninterrupted run would. The SPO sampler reads the run's
ValueTracker (the algorithm's `prompt_values`), which SPO updates and checkpoints itself.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from training.algorithms.spo import ValueTracker
from training.spec.config import RunConfig
from training.spec.tasks import Example

# Curriculum pacing: the easiest quarter of the prompts at the first step, all at the last.
CURRICULUM_START = 0.25


class SamplerError(ValueError):
    """The run's prompts cannot be sampled as asked; the message says what to do."""


class PromptSource(Protocol):
    """A built-in task or a prompt dataset."""

    @property
    def examples(self) -> Sequence[Example]: ...

    def sample(self, rng: random.Random, n: int) -> list[Example]: ...


class PromptSampler(Protocol):
    def sample(self, n: int) -> list[Example]:
        """The next n prompts, distinct while there are that many."""

    def observe(self, examples: list[Example], rewards: torch.Tensor, group_size: int) -> None:
        """What the step's prompts scored, rewards (B*G,) group by group; called once per step,
        after scoring."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class UniformSampler:
    """The task's own uniform sampling, so a run draws the same prompts as with `task.sample`."""

    def __init__(self, task: PromptSource, seed: int):
        self.task = task
        self.rng = random.Random(seed)

    def sample(self, n: int) -> list[Example]:
        return self.task.sample(self.rng, n)

    def observe(self, examples: list[Example], rewards: torch.Tensor, group_size: int) -> None:
        pass  # uniform sampling learns nothing from outcomes

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


class SPOPrioritySampler:
    """Prompts drawn without replacement with probability ∝ the tracker's sqrt(v̂ (1 − v̂)) + ε.

    The reference draws from a large shuffled candidate batch (14,000 of the DAPO set); here from
    the whole pool. A weighted draw without replacement (numpy's `choice(replace=False, p=…)` in
    the reference) is taken as the n largest keys log(u)/w, u ~ U(0, 1] (Efraimidis & Spirakis,
    2006), in one pass over the pool.
    """

    def __init__(self, examples: Sequence[Example], tracker: ValueTracker, seed: int):
        self.examples = list(examples)
        self.tracker = tracker
        self.rng = random.Random(seed)

    def sample(self, n: int) -> list[Example]:
        weights = self.tracker.priority([e.prompt_id for e in self.examples]).tolist()  # (M,)
        if n > len(self.examples):
            return self.rng.choices(self.examples, weights=weights, k=n)
        keys = [math.log(1.0 - self.rng.random()) / w for w in weights]
        chosen = sorted(range(len(keys)), key=keys.__getitem__, reverse=True)[:n]
        return [self.examples[i] for i in chosen]

    def observe(self, examples: list[Example], rewards: torch.Tensor, group_size: int) -> None:
        pass  # SPO updates the tracker: the update needs the policy's log-prob change

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


class CurriculumSampler:
    """Easiest first, by the `difficulty` column (lower = easier).

    Pacing: at step s of S the pool is the easiest fraction
        f(s) = f₀ + (1 − f₀)·(s − 1)/(S − 1),   f₀ = CURRICULUM_START (f = 1 when S = 1)
    of the prompts, ⌈f·M⌉ of M but never fewer than the n asked for; n are drawn uniformly from it,
    distinct while there are enough. Prompts of equal difficulty are in a seeded random order, so
    the file's order does not decide which of them come first. The step advances in `observe`.
    """

    def __init__(self, examples: Sequence[Example], max_steps: int, seed: int):
        missing = [e.prompt_id for e in examples if not _is_number(e.columns.get("difficulty"))]
        if missing:
            which = ("none of its prompts has one" if len(missing) == len(examples) else
                     f"{len(missing)} of its {len(examples)} prompts have none "
                     f"({', '.join(missing[:10])}{', …' if len(missing) > 10 else ''})")
            raise SamplerError(
                f"The curriculum orders prompts by the dataset's difficulty column, and "
                f"{which}. Upload the dataset with a difficulty column (a number per row, lower "
                f"= easier) mapped, or choose another prompt sampler.")
        self.rng = random.Random(seed)
        shuffled = list(examples)
        self.rng.shuffle(shuffled)
        self.ordered = sorted(shuffled, key=lambda e: float(e.columns["difficulty"]))
        self.max_steps = max_steps
        self.step = 1

    def allowed_fraction(self, step: int) -> float:
        """f(step): the share of the prompts, easiest first, that step draws from."""
        if self.max_steps <= 1:
            return 1.0
        progress = min(max(step - 1, 0) / (self.max_steps - 1), 1.0)
        return CURRICULUM_START + (1.0 - CURRICULUM_START) * progress

    def sample(self, n: int) -> list[Example]:
        total = len(self.ordered)
        if n > total:
            return self.rng.choices(self.ordered, k=n)
        allowed = max(n, math.ceil(self.allowed_fraction(self.step) * total))
        return self.rng.sample(self.ordered[:allowed], n)

    def observe(self, examples: list[Example], rewards: torch.Tensor, group_size: int) -> None:
        self.step += 1

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])
        self.step = int(state["step"])


def in_bounds(rewards: torch.Tensor, group_size: int, low: float, high: float) -> torch.Tensor:
    """Which groups the difficulty filter keeps: low < pass rate < high. rewards (B*G,) group by
    group -> mask (B,) bool.

    Pass `rewards` = the task's own correctness reward (not the weighted total, whose extra terms
    say nothing about difficulty). A completion passes when its reward is above 0, as SPO's
    reference counts offline successes; for 0/1 correctness the pass rate is the group's mean.
    With the bounds 0 and 1 this keeps exactly the groups whose completions disagree (DAPO).
    """
    pass_rate = (rewards.view(-1, group_size) > 0).float().mean(dim=1)  # (B,)
    return (pass_rate > low) & (pass_rate < high)


_SAMPLERS: dict[str, Callable[[RunConfig, PromptSource, ValueTracker | None], PromptSampler]] = {
    "uniform": lambda config, task, tracker: UniformSampler(task, config.seed),
    # The filter itself runs in the online loop, around generation: it draws prompts uniformly.
    "difficulty_filter": lambda config, task, tracker: UniformSampler(task, config.seed),
    "spo_priority": lambda config, task, tracker: SPOPrioritySampler(
        task.examples, _required(tracker), config.seed),
    "curriculum": lambda config, task, tracker: CurriculumSampler(
        task.examples, config.max_steps, config.seed),
}


def make_sampler(config: RunConfig, task: PromptSource,
                 tracker: ValueTracker | None = None) -> PromptSampler:
    """The run's prompt sampler over `task`'s prompts; SamplerError if they do not allow it
    (a curriculum over prompts without a difficulty). spo_priority needs the run's tracker."""
    return _SAMPLERS[config.prompt_sampler](config, task, tracker)


def _required(tracker: ValueTracker | None) -> ValueTracker:
    if tracker is None:
        raise TypeError("spo_priority sampling reads the run's ValueTracker: pass it")
    return tracker


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def _set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss_next = state
    rng.setstate((version, tuple(internal), gauss_next))
