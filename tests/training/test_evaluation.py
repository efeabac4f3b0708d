"""Sampling and scoring for evaluation, on the tiny model with transformers rollouts."""

import pytest
import torch

from training import rewards
from training.config import RunConfig
from training.eval_metrics import summarize
from training.evaluation import sample_and_score
from training.generation import TransformersBackend
from training.models import load_policy
from training.tasks import get_task


def has_number(prompts, completions, **columns):
    return [1.0 if rewards.last_number(text) is not None else 0.0 for text in completions]


def always(prompts, completions, **columns):
    return [1.0] * len(completions)


@pytest.fixture
def backend(tiny_model):
    config = RunConfig(model=str(tiny_model), max_new_tokens=8, rollout_backend="transformers")
    model, tokenizer = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    return TransformersBackend(model, tokenizer, config), config


def test_every_prompt_gets_n_scored_samples(backend):
    backend, config = backend
    examples = get_task("arithmetic").examples[:5]
    results = sample_and_score(backend, examples, {"correct": has_number}, config, samples=4,
                               batch_prompts=2)
    assert [r.prompt_id for r in results] == [e.prompt_id for e in examples]
    for r in results:
        assert len(r.correct) == len(r.answers) == len(r.rewards) == len(r.lengths) == 4
        assert all(1 <= n <= config.max_new_tokens for n in r.lengths)
        # the verifier's answer reader and its reward agree: a number is an answer
        assert list(r.correct) == [a is not None for a in r.answers]
        assert list(r.rewards) == [float(ok) for ok in r.correct]
    metrics = summarize(results, pass_ks=(1, 4), maj_ks=(4,))
    assert 0 <= metrics["pass@1"] <= metrics["pass@4"] <= 1
    assert metrics["avg@4"] == pytest.approx(metrics["pass@1"])


def test_a_verifier_that_accepts_everything_passes_every_metric(backend):
    backend, config = backend
    examples = get_task("arithmetic").examples[:3]
    results = sample_and_score(backend, examples, {"always": always}, config, samples=2)
    metrics = summarize(results, pass_ks=(1, 2))
    assert metrics["pass@1"] == metrics["pass@2"] == metrics["avg@2"] == 1.0
    assert all(a is None for r in results for a in r.answers)  # no reader for "always"


def test_a_stop_request_ends_sampling(backend):
    backend, config = backend
    examples = get_task("arithmetic").examples[:4]
    assert sample_and_score(backend, examples, {"correct": has_number}, config, samples=2,
                            should_stop=lambda: True) is None
