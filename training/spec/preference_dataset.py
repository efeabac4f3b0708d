"""Preference datasets from a file: what DPO trains on.

The file is JSON lines, one object per line with a `prompt` (the user message), a `chosen` reply
and a `rejected` one. The web app writes such a file for every preference dataset it stores and
puts its path in the run's `dataset` setting. No torch here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.spec.prompt_dataset import DatasetFileError, read_rows


@dataclass(frozen=True)
class PreferencePair:
    pair_id: str  # "#<line>": stable across runs on the same file
    prompt: str  # the user message
    chosen: str  # the preferred reply, y_w
    rejected: str  # the dispreferred reply, y_l


class PairSampler:
    """Each step's pairs: a walk through the dataset in a shuffled order, reshuffled at every
    epoch, so every pair is used once per epoch."""

    def __init__(self, pairs: Sequence[PreferencePair], seed: int):
        self.pairs = pairs
        self.rng = random.Random(seed)
        self.order: list[int] = []  # this epoch's permutation of the pairs' indices
        self.position = 0  # pairs of `order` already handed out

    def sample(self, n: int) -> list[PreferencePair]:
        """The next n pairs of the walk (into the next epoch when this one runs out)."""
        indices: list[int] = []
        while len(indices) < n:
            if self.position == len(self.order):
                self.order = list(range(len(self.pairs)))
                self.rng.shuffle(self.order)
                self.position = 0
            end = min(len(self.order), self.position + n - len(indices))
            indices += self.order[self.position:end]
            self.position = end
        return [self.pairs[i] for i in indices]

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position, as JSON: where a resumed run goes on from."""
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss], "order": list(self.order),
                "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.order = list(state["order"])
        self.position = state["position"]


class _PromptDatasetRow(Exception):
    """A line of a prompt dataset (prompt and answer), given where pairs were expected."""


def load_preference_dataset(path: str | Path) -> list[PreferencePair]:
    """Read a JSON-lines preference dataset; DatasetFileError lists the first bad lines."""
    try:
        pairs = read_rows(path, _pair)
    except _PromptDatasetRow:
        raise DatasetFileError(
            f"The dataset file {str(path)!r} is a prompt dataset (a prompt and an answer per "
            f"line). DPO trains on preference pairs: choose a dataset with a prompt, a chosen "
            f"and a rejected reply per line.") from None
    if not pairs:
        raise DatasetFileError(f"The dataset file {str(path)!r} has no preference pairs.")
    return pairs


def _pair(number: int, row: dict[str, Any]) -> PreferencePair:
    if "answer" in row and "chosen" not in row and "rejected" not in row:
        raise _PromptDatasetRow()
    for key, what in (("prompt", "prompt"), ("chosen", "chosen reply"),
                      ("rejected", "rejected reply")):
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"no {what}")
    return PreferencePair(pair_id=f"#{number}", prompt=row["prompt"], chosen=row["chosen"],
                          rejected=row["rejected"])
