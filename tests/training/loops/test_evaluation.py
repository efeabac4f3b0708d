"""Evaluation: sampling and scoring, and whole evaluation jobs, on the tiny model with
transformers rollouts."""

import json
import shutil

import pytest
import torch

from training.spec import rewards
from training.checkpoints import TRAINER_STATE
from training.spec.config import ConfigError, RunConfig
from training.spec.evaluation_config import EvalConfig
from training.spec.evaluation_metrics import summarize
from training.loops.evaluation import evaluate, evaluation_examples, sample_and_score
from training.spec.events import ListReporter
from training.rollouts.generation import TransformersBackend
from training.policies.loading import load_policy
from training.spec.rewards import correct_answer, last_number
from training.loops.setup import Outcome
from training.spec.tasks import get_task, is_held_out


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


def _eval_config(model, **overrides) -> EvalConfig:
    values = dict(model=str(model), samples=3, pass_ks="1, 3", maj_ks="3", max_new_tokens=5,
                  max_prompts=5, batch_prompts=2, rollout_backend="transformers")
    values.update(overrides)
    return EvalConfig.from_dict(values, paths=True)


def test_an_evaluation_job_reports_every_sample_then_the_metrics(tiny_model):
    reporter = ListReporter()
    config = _eval_config(tiny_model)
    assert evaluate(config, reporter) is Outcome.COMPLETED

    [running] = reporter.of_kind("status")
    assert running["total_steps"] == 5 and running["device"] == "cpu"
    # three batches of at most 2 prompts; one group per prompt, numbered across batches
    batches = reporter.of_kind("rollouts")
    assert [len(b["items"]) for b in batches] == [6, 6, 3]
    items = [item for batch in batches for item in batch["items"]]
    assert {b["step"] for b in batches} == {0}  # a base model is evaluated at step 0
    assert [(i["group"], i["sample_index"]) for i in items] == [
        (g, s) for g in range(5) for s in range(3)]
    expected = evaluation_examples("arithmetic", "", "held_out", 5)
    assert [items[3 * g]["prompt_id"] for g in range(5)] == [e.prompt_id for e in expected]
    assert all(is_held_out(i["prompt_id"]) for i in items)
    for item in items:
        right = correct_answer([""], [item["completion"]], answer=[item["extra"]["answer"]])[0]
        assert item["reward"] == item["rewards"]["correct"] == right
        assert item["extra"]["correct"] == (right == 1.0)
        number = last_number(item["completion"])
        assert item["extra"]["extracted_answer"] == (None if number is None else str(number))
    assert [p["step"] for p in reporter.of_kind("progress")] == [2, 4, 5]

    [metrics] = reporter.of_kind("metrics")
    values = metrics["values"]
    assert metrics["step"] == 0
    assert {"eval/pass@1", "eval/pass@3", "eval/maj@3", "eval/avg@3", "eval/reward/mean",
            "eval/length/mean"} <= set(values)
    assert values["eval/prompts"] == 5 and values["eval/samples"] == 3
    correct = [i["extra"]["correct"] for i in items]
    assert values["eval/avg@3"] == pytest.approx(sum(correct) / 15)
    assert values["eval/pass@1"] == pytest.approx(values["eval/avg@3"])
    solved = sum(any(correct[3 * g:3 * g + 3]) for g in range(5))
    assert values["eval/pass@3"] == pytest.approx(solved / 5)  # n = k: any correct sample
    lengths = [i["completion_tokens"] for i in items]
    assert values["eval/length/mean"] == pytest.approx(sum(lengths) / 15)


def test_a_checkpoint_is_evaluated_at_its_training_step(tiny_model, tmp_path):
    checkpoint = tmp_path / "checkpoint-7"
    shutil.copytree(tiny_model, checkpoint)
    (checkpoint / TRAINER_STATE).write_text(json.dumps({"step": 7}))
    reporter = ListReporter()
    assert evaluate(_eval_config(checkpoint, max_prompts=2), reporter) is Outcome.COMPLETED
    assert {e["step"] for e in reporter.of_kind("rollouts") + reporter.of_kind("metrics")} == {7}


def test_a_missing_model_fails_with_a_clear_error(tmp_path):
    reporter = ListReporter()
    assert evaluate(_eval_config(tmp_path / "nothing"), reporter) is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert "does not exist" in error["message"]
    assert not reporter.of_kind("rollouts")


def test_a_stopped_evaluation_reports_no_metrics(tiny_model):
    reporter = ListReporter()
    calls = []

    def stop_after_first_batch() -> bool:
        calls.append(1)
        return len(calls) > 1

    outcome = evaluate(_eval_config(tiny_model), reporter, should_stop=stop_after_first_batch)
    assert outcome is Outcome.STOPPED
    assert len(reporter.of_kind("rollouts")) == 1 and not reporter.of_kind("metrics")


def test_a_dataset_is_evaluated_on_all_its_rows_by_default(tiny_model, tmp_path):
    dataset = tmp_path / "test.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": f"{i} + 1?", "answer": i + 1}) + "\n"
                               for i in range(6)))
    config = _eval_config(tiny_model, dataset=str(dataset), max_prompts=0, batch_prompts=10)
    assert config.resolved_split == "all"
    reporter = ListReporter()
    assert evaluate(config, reporter) is Outcome.COMPLETED
    ids = {i["prompt_id"] for b in reporter.of_kind("rollouts") for i in b["items"]}
    assert ids == {f"#{n}" for n in range(1, 7)}
    # none of lines 1-6 is held out (the first is line 25): said plainly, not an empty result
    assert not any(is_held_out(f"#{n}") for n in range(1, 7))
    reporter = ListReporter()
    config = _eval_config(tiny_model, dataset=str(dataset), split="held_out")
    assert evaluate(config, reporter) is Outcome.FAILED
    assert "no prompts in the dataset's held-out split" in reporter.of_kind("error")[0]["message"]


def test_the_evaluated_prompts_are_a_fixed_shuffle_of_the_split():
    every = evaluation_examples("arithmetic-2digit", "", "held_out", 0)
    first = evaluation_examples("arithmetic-2digit", "", "held_out", 50)
    assert first == every[:50]  # a smaller evaluation is the start of a larger one
    assert first == evaluation_examples("arithmetic-2digit", "", "held_out", 50)
    assert [e.prompt_id for e in first] != sorted(e.prompt_id for e in first)
    assert all(is_held_out(e.prompt_id) for e in every)


def test_an_evaluation_config_checks_k_against_n():
    with pytest.raises(ConfigError) as caught:
        EvalConfig.from_dict({"samples": 4, "pass_ks": "1, 8", "maj_ks": "x"})
    assert set(caught.value.errors) == {"maj_ks"}
    with pytest.raises(ConfigError) as caught:
        EvalConfig.from_dict({"samples": 4, "pass_ks": "1, 8", "maj_ks": "5"})
    assert "8 is more than the 4 samples" in caught.value.errors["pass_ks"]
    assert "5 is more than the 4 samples" in caught.value.errors["maj_ks"]
    with pytest.raises(ConfigError, match="at least one k"):
        EvalConfig.from_dict({"pass_ks": " , "})
