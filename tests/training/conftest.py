"""Fixtures for the training tests. The tiny model itself (tests/conftest.py) needs the SmolLM2
tokenizer, which comes from the built-in model's converted folder (created under
$RLAB_MODEL_CACHE on first use, about 20 s, then reused)."""

from __future__ import annotations

from pathlib import Path

import pytest

import training.spec.tasks
from training.loops.train import Outcome, train
from training.spec.config import RunConfig
from training.spec.events import ListReporter
from training.spec.tasks import AdditionTask


@pytest.fixture
def tiny_config(tiny_model: Path) -> RunConfig:
    """A run small enough to take about a second: 2 steps of 2 prompts × G=3, 6 tokens."""
    return RunConfig(model=str(tiny_model), max_steps=2, prompts_per_step=2, group_size=3,
                     max_new_tokens=6, micro_batch_size=4, rollouts_logged_per_step=4,
                     rollout_backend="transformers")


def _longer_is_better(prompts, completions, **columns):
    return [float(len(c)) for c in completions]


@pytest.fixture
def length_rewarded(monkeypatch):
    """The random tiny model never answers right: its task rewards length instead, so that the
    completions of a group differ and the policy moves from the first step."""
    task = AdditionTask(low=0, high=9, reward_functions={"correct": _longer_is_better})
    monkeypatch.setitem(training.spec.tasks.TASKS, "arithmetic", task)


def run_and_resume(config: RunConfig, folder: Path, at: int) -> tuple[ListReporter, ListReporter]:
    """`config` run to its end, saving checkpoints under folder/straight, and run again resumed
    from that run's checkpoint-`at` under folder/resumed; both reporters. Each run must
    complete."""
    straight, resumed = ListReporter(), ListReporter()
    assert train(config, straight, output_dir=folder / "straight") is Outcome.COMPLETED, \
        straight.of_kind("error")
    again = config.with_changes(resume_from=str(folder / "straight" / f"checkpoint-{at}"))
    assert train(again, resumed, output_dir=folder / "resumed") is Outcome.COMPLETED, \
        resumed.of_kind("error")
    return straight, resumed
