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


_THINK_ANSWER = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def think_format(prompts: list[Any], completions: list[str], **columns: Any) -> list[float]:
    """1.0 for a completion that is a <think> block followed by an <answer> block, else 0.0.

    >>> think_format([""] * 3, ["<think>3+4 is 7</think> <answer>7</answer>",
    ...                         "<answer>7</answer>", "<think>x</think><answer>7</answer> ps"])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if _THINK_ANSWER.match(c) else 0.0 for c in completions]


def _final_answer(completion: str) -> str:
    """The last <answer>…</answer> if there is one, else the whole completion."""
    tagged = _ANSWER_TAG.findall(completion)
    return tagged[-1] if tagged else completion


def math_answer(completion: str) -> float | str | None:
    r"""The final answer as math-verify reads it, for majority voting: a number by its value (so
    "1/2", "\frac{1}{2}" and "0.5" vote together), anything else in math-verify's normal form;
    None when it finds no answer.

    >>> [math_answer(text) for text in ("so it is \\frac{1}{2}", "<answer>0.5</answer>",
    ...                                 "x = 7.0", "$\\sqrt{2}$", "seven")]
    [0.5, 0.5, 7.0, 'sqrt(2)', None]
    """
    from math_verify import parse
    from sympy import Number

    parsed = parse(_final_answer(completion))
    if not parsed:
        return None
    return float(parsed[0]) if isinstance(parsed[0], Number) else str(parsed[0])


def math_equivalent(prompts: list[Any], completions: list[str], *, answer: list[Any],
                    **columns: Any) -> list[float]:
    """1.0 where math-verify finds the completion's final answer equal to the reference
    (fractions, decimals, LaTeX, sets and intervals alike), else 0.0.

    >>> math_equivalent([""] * 4, ["so it is \\\\frac{1}{2}", "<answer>0.5</answer>",
    ...                            "about 0.49", "no idea"], answer=["1/2"] * 4)
    [1.0, 1.0, 0.0, 0.0]
    """
    from math_verify import parse, verify  # imports sympy: only when this reward is used

    rewards = []
    for completion, reference in zip(completions, answer, strict=True):
        gold = parse(str(reference))
        guess = parse(_final_answer(completion))
        rewards.append(1.0 if gold and guess and verify(gold, guess) else 0.0)
    return rewards


def length_penalty(prompts: list[Any], completions: list[str], *, completion_tokens: list[int],
                   max_new_tokens: int, **columns: Any) -> list[float]:
    """−(tokens ÷ max_new_tokens), in [−1, 0]: with a small weight, a push towards brevity.

    >>> length_penalty([""] * 2, ["a", "b"], completion_tokens=[8, 32], max_new_tokens=32)
    [-0.25, -1.0]
    """
    return [-n / max_new_tokens for n in completion_tokens]


def token_budget(prompts: list[Any], completions: list[str], *, completion_tokens: list[int],
                 token_budget: int, **columns: Any) -> list[float]:
    """0 within the budget, −(tokens − budget) ÷ budget beyond it.

    >>> token_budget([""] * 3, ["a", "b", "c"], completion_tokens=[10, 20, 30], token_budget=20)
    [0.0, 0.0, -0.5]
    """
    return [-max(0, n - token_budget) / token_budget for n in completion_tokens]


def countdown(prompts: list[Any], completions: list[str], *, numbers: list[list[int]],
              target: list[int], **columns: Any) -> list[float]:
    """1.0 when the final answer is an arithmetic expression (+ − × ÷, brackets) that uses each
    of `numbers` exactly once and equals `target`, else 0.0. The expression is parsed, never
    executed as code.

    >>> countdown([""] * 4, ["<answer>(6 - 2) * 5</answer>", "<answer>6 * 5 - 2</answer>",
    ...                      "<answer>(6-2)*5*1</answer>", "<answer>__import__('os')</answer>"],
    ...           numbers=[[2, 5, 6]] * 4, target=[20] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """
    rewards = []
    for completion, given, goal in zip(completions, numbers, target, strict=True):
        expression = _final_answer(completion).strip().replace("×", "*").replace("÷", "/")
        try:
            value, used = _evaluate_arithmetic(expression)
        except (ValueError, SyntaxError, ZeroDivisionError, RecursionError):
            rewards.append(0.0)
            continue
        ok = sorted(used) == sorted(int(n) for n in given) and abs(value - float(goal)) < 1e-9
        rewards.append(1.0 if ok else 0.0)
    return rewards


def _evaluate_arithmetic(expression: str) -> tuple[float, list[int]]:
    """The value of + − * / over integer literals, and the literals used; ValueError otherwise."""
    import ast
    import operator

    operators = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                 ast.Div: operator.truediv}
    used: list[int] = []

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return operators[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return float(node.value)
        raise ValueError(f"not allowed in a countdown answer: {ast.dump(node)[:40]}")

    if len(expression) > 200:
        raise ValueError("expression too long")
    return walk(ast.parse(expression, mode="eval").body), used


# Rewards a run can add by name (training.spec.config.EXTRA_REWARDS describes them).
EXTRA_REWARD_FUNCTIONS = {
    "think_format": think_format,
    "math_equivalent": math_equivalent,
    "length_penalty": length_penalty,
    "token_budget": token_budget,
    "countdown": countdown,
}
