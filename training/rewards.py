"""Reward functions: plain functions `(prompts, completions, **columns) -> list[float]`.

`columns` holds the task's per-example data (for arithmetic, `answer`), one entry per completion.
"""

from __future__ import annotations

import re
from typing import Any

# A thousands-grouped number ("1,000") or a plain one, optionally negative and with decimals.
# The sign counts only when no digit precedes it, so "10-3" reads as 10 and 3.
_NUMBER = re.compile(r"(?<![\d.])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in `text`, or None.

    >>> last_number("3 + 4 = 7.")
    7.0
    >>> last_number("That makes 1,000 apples, or -2.5 crates")
    -2.5
    >>> last_number("no digits here") is None
    True
    """
    matches = _NUMBER.findall(text)
    return float(matches[-1].replace(",", "")) if matches else None


def correct_answer(prompts: list[Any], completions: list[str], *, answer: list[Any],
                   **columns: Any) -> list[float]:
    """1.0 where the last number in the completion equals the answer, else 0.0.

    >>> correct_answer(["Compute 3 + 4."] * 4,
    ...                ["3 + 4 = 7", "The answer is 7.", "It is 8", "I don't know"],
    ...                answer=["7"] * 4)
    [1.0, 1.0, 0.0, 0.0]
    >>> correct_answer(["..."] * 4, ["1,000", "so -3", "12.0", "7 then 12"],
    ...                answer=[1000, -3, "12", 7])
    [1.0, 1.0, 1.0, 0.0]
    """
    rewards = []
    for completion, expected in zip(completions, answer, strict=True):
        got = last_number(completion)
        rewards.append(1.0 if got is not None and abs(got - float(expected)) < 1e-9 else 0.0)
    return rewards
