"""Fixtures for the training tests. The tiny model itself (tests/conftest.py) needs the SmolLM2
tokenizer, which comes from the built-in model's converted folder (created under
$RLAB_MODEL_CACHE on first use, about 20 s, then reused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.spec.config import RunConfig


@pytest.fixture
def tiny_config(tiny_model: Path) -> RunConfig:
    """A run small enough to take about a second: 2 steps of 2 prompts × G=3, 6 tokens."""
    return RunConfig(model=str(tiny_model), max_steps=2, prompts_per_step=2, group_size=3,
                     max_new_tokens=6, micro_batch_size=4, rollouts_logged_per_step=4,
                     rollout_backend="transformers")
