"""Built-in tasks: prompts with a verifiable answer, and the reward functions that check it.

A task hands the trainer plain-text questions; the trainer applies the model's chat template.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from training import rewards

RewardFunction = Callable[..., list[float]]


@dataclass(frozen=True)
class Example:
    prompt_id: str  # stable across runs, e.g. "3+4", so rollouts of the same question line up
    prompt: str  # the user message
    columns: dict[str, Any]  # passed to the reward functions, e.g. {"answer": "7"}


@dataclass(frozen=True)
class AdditionTask:
    """Sums a + b with both operands drawn uniformly from [low, high]."""

    low: int
    high: int
    reward_functions: dict[str, RewardFunction] = field(
        default_factory=lambda: {"correct": rewards.correct_answer})

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        """n questions, distinct while the task has that many."""
        pairs = [(a, b) for a in range(self.low, self.high + 1)
                 for b in range(self.low, self.high + 1)]
        chosen = rng.sample(pairs, n) if n <= len(pairs) else rng.choices(pairs, k=n)
        return [self._example(a, b) for a, b in chosen]

    @property
    def examples(self) -> tuple[Example, ...]:
        """Every question of the task, as a prompt dataset lists its examples."""
        return tuple(self._example(a, b) for a in range(self.low, self.high + 1)
                     for b in range(self.low, self.high + 1))

    @staticmethod
    def _example(a: int, b: int) -> Example:
        return Example(
            prompt_id=f"{a}+{b}",
            prompt=f"Compute {a} + {b}. Give the final answer as a number at the end.",
            columns={"answer": str(a + b)})


# Keys match training.config.TASKS, which holds the descriptions shown in the web app.
TASKS = {
    "arithmetic": AdditionTask(low=0, high=9),
    "arithmetic-2digit": AdditionTask(low=10, high=99),
}


def get_task(name: str) -> AdditionTask:
    return TASKS[name]
