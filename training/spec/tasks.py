"""Built-in tasks: prompts with a verifiable answer, and the reward functions that check it.

A task hands the trainer plain-text questions; the trainer applies the model's chat template.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable

from training.spec import rewards

RewardFunction = Callable[..., list[float]]

SPLITS = {
    "train": "the prompts a run trains on",
    "held_out": "the held-out prompts, never trained on: for evaluation",
    "all": "every prompt",
}
HELD_OUT_PERCENT = 10


def is_held_out(prompt_id: str) -> bool:
    """Whether a prompt is in the held-out split: decided by a stable hash of its id, so the split
    is the same on every machine and in every run, and adding prompts never moves old ones.

    >>> [is_held_out(f"{a}+{b}") for a, b in ((0, 0), (0, 1), (2, 3))]
    [True, True, False]
    """
    return zlib.crc32(prompt_id.encode("utf-8")) % 100 < HELD_OUT_PERCENT


def in_split(prompt_id: str, split: str) -> bool:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return split == "all" or is_held_out(prompt_id) == (split == "held_out")


def split_examples(examples: Iterable[Example], split: str) -> tuple[Example, ...]:
    return tuple(e for e in examples if in_split(e.prompt_id, split))


@dataclass(frozen=True)
class Example:
    prompt_id: str  # stable across runs, e.g. "3+4", so rollouts of the same question line up
    prompt: str  # the user message
    columns: dict[str, Any]  # passed to the reward functions, e.g. {"answer": "7"}


@dataclass(frozen=True)
class AdditionTask:
    """Sums a + b with both operands drawn uniformly from [low, high], among the questions of
    its split."""

    low: int
    high: int
    split: str = "train"
    reward_functions: dict[str, RewardFunction] = field(
        default_factory=lambda: {"correct": rewards.correct_answer})

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        """n questions, distinct while the split has that many."""
        examples = self.examples
        return rng.sample(examples, n) if n <= len(examples) else rng.choices(examples, k=n)

    @cached_property
    def examples(self) -> tuple[Example, ...]:
        """Every question of the split, as a prompt dataset lists its examples."""
        return split_examples((self._example(a, b) for a in range(self.low, self.high + 1)
                               for b in range(self.low, self.high + 1)), self.split)

    @staticmethod
    def _example(a: int, b: int) -> Example:
        return Example(
            prompt_id=f"{a}+{b}",
            prompt=f"Compute {a} + {b}. Give the final answer as a number at the end.",
            columns={"answer": str(a + b)})


# Keys match training.spec.config.TASKS, which holds the descriptions shown in the web app.
TASKS = {
    "arithmetic": AdditionTask(low=0, high=9),
    "arithmetic-2digit": AdditionTask(low=10, high=99),
}


def get_task(name: str, split: str = "train") -> AdditionTask:
    """A built-in task's questions in `split`: runs train on "train", evaluations default to
    "held_out"."""
    return replace(TASKS[name], split=split)
