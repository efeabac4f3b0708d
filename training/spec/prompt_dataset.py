"""Prompt datasets from a file: the trainer's alternative to a built-in task.

The file is JSON lines, one object per line with a `prompt` (the user message) and an `answer`
(a number, checked by `rewards.correct_answer` against the last number in each completion), and
optionally a `difficulty` (a number, lower = easier, or null for unknown; the curriculum sampler
orders prompts by it). Other keys are left out unless the trainer asks for them by name (DUMP's
distribution column, `source` by default). The web app writes such a file for every prompt dataset
it stores, and puts its path in the run's `dataset` setting. No torch here: the web app uses
`check_answer` and `parse_difficulty` when a dataset is uploaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from training.spec import rewards
from training.spec.tasks import HELD_OUT_PERCENT, Example, RewardFunction, split_examples

MAX_ERRORS = 10
T = TypeVar("T")


class DatasetFileError(ValueError):
    """A dataset file the trainer cannot use; the message names the file and the lines."""


def check_answer(value: str) -> str | None:
    """Why `value` cannot be an answer for `correct_answer`, or None if it can.

    >>> check_answer("42") is None and check_answer(" -3.5 ") is None
    True
    >>> check_answer("forty-two")
    "'forty-two' is not a number"
    """
    try:
        number = float(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"{shown!r} is not a number"
    if number != number or number in (float("inf"), float("-inf")):
        return f"{value!r} is not a finite number"
    return None


def parse_difficulty(value: object) -> float | None:
    """A difficulty as a number, None when unknown (null or blank); ValueError if it is no number.

    >>> [parse_difficulty(v) for v in (3, " 0.5 ", "", None)]
    [3.0, 0.5, None, None]
    >>> parse_difficulty("hard")
    Traceback (most recent call last):
    ...
    ValueError: the difficulty 'hard' is not a number
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"the difficulty {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ValueError(f"the difficulty {shown!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"the difficulty {value!r} is not a finite number")
    return number


@dataclass(frozen=True)
class PromptDataset:
    """The examples of a dataset file, sampled like a built-in task. When any line has a
    difficulty, every example's columns have one (None where unknown)."""

    examples: tuple[Example, ...]
    reward_functions: dict[str, RewardFunction] = field(
        default_factory=lambda: {"correct": rewards.correct_answer})

    def sample(self, rng: random.Random, n: int) -> list[Example]:
        """n examples, distinct while the dataset has that many."""
        if n <= len(self.examples):
            return rng.sample(self.examples, n)
        return rng.choices(self.examples, k=n)

    def split(self, name: str) -> PromptDataset:
        """The examples in split `name` (training.spec.tasks.SPLITS); DatasetFileError if none."""
        examples = split_examples(self.examples, name)
        if not examples:
            raise DatasetFileError(
                f"The dataset has no {name.replace('_', '-')} prompts: {HELD_OUT_PERCENT}% of "
                f"its {len(self.examples)} prompts, chosen by a hash of the line number, are "
                f"held out, and that leaves none here. Use a larger dataset.")
        return dataclasses.replace(self, examples=examples)


def load_prompt_dataset(path: str | Path, columns: Sequence[str] = ()) -> PromptDataset:
    """Read a JSON-lines prompt dataset; DatasetFileError lists the first bad lines. `columns`
    names more keys to keep as they are in the file (a prompt sampler's, such as DUMP's
    distribution column); every example has each of them, None where its line has none."""
    examples = read_rows(path, lambda number, row: _example(number, row, columns))
    if not examples:
        raise DatasetFileError(f"The dataset file {str(path)!r} has no examples.")
    if any("difficulty" in e.columns for e in examples):
        # The trainer hands every column to the reward functions, so all examples need each one.
        examples = [dataclasses.replace(e, columns={**e.columns,
                                                    "difficulty": e.columns.get("difficulty")})
                    for e in examples]
    return PromptDataset(examples=tuple(examples))


def read_rows(path: str | Path, parse: Callable[[int, dict[str, Any]], T]) -> list[T]:
    """parse(line number, object) of each non-blank line of a JSON-lines file, in order. A
    ValueError from `parse`, or a line that is no JSON object, is collected with its line
    number; DatasetFileError lists the first MAX_ERRORS of them."""
    text = read_worker_file(path, DatasetFileError, "dataset", "")
    rows, errors = parse_json_lines(text, parse)
    if errors:
        raise DatasetFileError(f"The dataset file {str(path)!r} has errors: " + "; ".join(errors))
    return rows


def _example(number: int, row: dict[str, Any], keep: Sequence[str] = ()) -> Example:
    prompt, answer = row.get("prompt"), row.get("answer")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("no prompt")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("no answer")
    problem = check_answer(answer)
    if problem:
        raise ValueError(f"the answer {problem}; correct_answer compares numbers")
    columns: dict[str, object] = {"answer": answer.strip()}
    if "difficulty" in row:
        columns["difficulty"] = parse_difficulty(row["difficulty"])
    for name in keep:
        columns.setdefault(name, row.get(name))
    return Example(prompt_id=f"#{number}", prompt=prompt, columns=columns)


def parse_json_lines(text: str, parse: Callable[[int, dict[str, Any]], T],
                     ) -> tuple[list[T], list[str]]:
    """Each non-blank line of `text` that is a JSON object, through parse(line number, object);
    and the first MAX_ERRORS problems, "line N: what is wrong" (a line that is no JSON object,
    or whose parse raised ValueError), after which reading stops."""
    rows: list[T] = []
    errors: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            row = None
        try:
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            rows.append(parse(number, row))
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
            if len(errors) == MAX_ERRORS:
                break
    return rows, errors


def read_worker_file(path: str | Path, error: type[ValueError], noun: str, how: str) -> str:
    """A file the web app wrote for the trainer, as UTF-8 text; `error` saying what to check
    when the worker cannot see it or read it ("The {noun} file … cannot be read{how}: …")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"The {noun} file {str(path)!r} does not exist on this worker. Check that "
                    f"the worker sees the web app's dataset folder (RLAB_DATASET_DIR).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"The {noun} file {str(path)!r} cannot be read{how}: {exc}") from None
