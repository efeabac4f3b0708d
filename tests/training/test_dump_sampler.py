"""DUMP's distribution-level curriculum: the UCB scores and softmax by hand, the sliding window,
exploration of unseen distributions, prompts from the chosen distribution only, exact resumption,
the errors for rows without a distribution, and two-step runs on a dataset with a source column
with both rollout backends."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from tests.training.conftest import run_and_resume
import training.spec.rewards
from training.loops.train import Outcome, train
from training.samplers import DUMPSampler, SamplerError, make_sampler, metric_names
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter
from training.spec.prompt_dataset import PromptDataset, load_prompt_dataset
from training.spec.tasks import Example, get_task


def _examples(sources: list) -> tuple[Example, ...]:
    return tuple(Example(prompt_id=f"#{i}", prompt=f"q{i}", columns={"answer": "1", "source": s})
                 for i, s in enumerate(sources, start=1))


def _sampler(sources: list, **settings) -> DUMPSampler:
    return DUMPSampler(_examples(sources), **{"column": "source", "window": 300,
                                              "exploration": 1.0, "temperature": 0.1, "seed": 0,
                                              **settings})


def _observe(sampler: DUMPSampler, examples: list[Example], advantages: list[float],
             group_size: int) -> None:
    values = torch.tensor(advantages)
    sampler.observe(examples, torch.zeros_like(values), values, group_size)


def _source(example: Example) -> str:
    return example.columns["source"]


def test_ucb_scores_and_probabilities_match_the_hand_computed_ones():
    sampler = _sampler(["a", "a", "b", "b"])
    a = [e for e in sampler.pools["a"]]
    _observe(sampler, a[:1], [1.0, -0.5], group_size=2)  # |Â| 1, 0.5: L̂_a = 0.75, n_a = 2
    assert sampler.learnability("a") == 0.75 and sampler.learnability("b") == 0.0
    # Σn = 2: UCB_a = 0.75 + √(2 ln 3 / 3), UCB_b = 0 + √(2 ln 3 / 1)
    ucb_a, ucb_b = 0.75 + math.sqrt(2 * math.log(3) / 3), math.sqrt(2 * math.log(3))
    assert (ucb_a, ucb_b) == pytest.approx((1.6058085, 1.4823038))
    p_a = math.exp(ucb_a / 0.1) / (math.exp(ucb_a / 0.1) + math.exp(ucb_b / 0.1))
    assert sampler.probabilities() == pytest.approx([p_a, 1 - p_a])
    assert p_a == pytest.approx(0.7747007)


def test_before_any_step_every_distribution_is_equally_likely():
    assert _sampler(["a", "b", "c", "c"]).probabilities() == pytest.approx([1 / 3] * 3)


def test_the_window_keeps_the_last_w_completions_and_the_count_all():
    sampler = _sampler(["a", "b"], window=3)
    [a] = sampler.pools["a"]
    _observe(sampler, [a], [0.2, -0.4], group_size=2)
    _observe(sampler, [a], [0.6, -0.8], group_size=2)  # window: 0.4, 0.6, 0.8
    assert list(sampler.recent["a"]) == pytest.approx([0.4, 0.6, 0.8])
    assert sampler.learnability("a") == pytest.approx(0.6)
    assert sampler.drawn == {"a": 4, "b": 0}


def test_per_completion_advantages_go_to_their_prompts_distribution():
    sampler = _sampler(["a", "b", "c"])
    [a], [b], [c] = sampler.pools.values()
    _observe(sampler, [b, a, b], [1.0, 1.0, 0.5, 0.5, 0.0, -2.0], group_size=2)
    assert {d: list(w) for d, w in sampler.recent.items()} == {
        "a": [0.5, 0.5], "b": [1.0, 1.0, 0.0, 2.0], "c": []}
    assert sampler.shares == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0.0})


def test_an_unseen_distribution_is_explored_before_a_learnable_one_is_revisited():
    # a has been drawn 40 times with L̂ = 0.3; b never: UCB_b = √(2 ln 41) ≈ 2.73 beats
    # UCB_a = 0.3 + √(2 ln 41 / 41) ≈ 0.72, so b takes nearly all the probability.
    sampler = _sampler(["a", "b"])
    [a] = sampler.pools["a"]
    _observe(sampler, [a] * 5, [0.3, -0.3] * 20, group_size=8)
    p_a, p_b = sampler.probabilities()
    assert p_b > 0.999
    assert Counter(_source(e) for e in sampler.sample(8)) == {"b": 8}


def test_without_exploration_the_more_learnable_distribution_is_preferred():
    sampler = _sampler(["a", "b"], exploration=0.0, temperature=1.0)
    [a], [b] = sampler.pools.values()
    _observe(sampler, [a, b], [1.0, -1.0, 0.0, 0.0], group_size=2)  # L̂ = 1 and 0
    assert sampler.probabilities() == pytest.approx([math.e / (math.e + 1), 1 / (math.e + 1)])


def test_prompts_come_only_from_the_chosen_distributions_uniformly_and_distinct():
    sources = ["a"] * 6 + ["b"] * 6
    sampler = _sampler(sources)
    sampler.drawn = {"a": 100, "b": 0}  # b unseen: p_b ≈ 1
    for _ in range(20):
        batch = sampler.sample(4)
        assert {_source(e) for e in batch} == {"b"}
        assert len({e.prompt_id for e in batch}) == 4
    counts = Counter(e.prompt_id for _ in range(600) for e in sampler.sample(1))
    assert set(counts) == {f"#{i}" for i in range(7, 13)}
    assert all(abs(n / 600 - 1 / 6) < 0.05 for n in counts.values())


def test_a_distribution_smaller_than_its_draws_is_drawn_with_replacement():
    sampler = _sampler(["a", "b", "b"])
    sampler.drawn = {"a": 0, "b": 100}
    batch = sampler.sample(3)
    assert [e.prompt_id for e in batch] == ["#1"] * 3


def test_a_resumed_sampler_draws_what_the_uninterrupted_one_draws():
    sources = ["x"] * 5 + ["y"] * 5 + ["z"] * 5
    examples = _examples(sources)

    def step(sampler: DUMPSampler, number: int) -> list[str]:
        batch = sampler.sample(4)
        advantages = [((number * 7 + i) % 5 - 2) / 2 for i in range(8)]  # varied, signed
        _observe(sampler, batch, advantages, group_size=2)
        return [e.prompt_id for e in batch]

    settings = dict(column="source", window=5, exploration=0.5, temperature=0.2, seed=3)
    straight = DUMPSampler(examples, **settings)
    first = [step(straight, n) for n in range(3)]
    state = json.loads(json.dumps(straight.state_dict()))  # as a checkpoint keeps it
    rest = [step(straight, n) for n in range(3, 8)]
    resumed = DUMPSampler(examples, **settings)
    resumed.load_state_dict(state)
    assert [step(resumed, n) for n in range(3, 8)] == rest
    assert resumed.metrics() == straight.metrics()
    assert len({tuple(ids) for ids in first + rest}) > 1  # the draws vary, so equality tells


def test_metrics_name_each_distribution_safely_and_cap_their_number():
    sampler = _sampler([f"set {i:02}" for i in range(20)] + ["K&K/3"])
    batch = sampler.sample(2)
    _observe(sampler, batch, [0.5] * 4, group_size=2)
    metrics = sampler.metrics()
    assert len(metrics) == 3 * 16  # "K&K/3" sorts first; the last 5 sets are left out
    assert {"dump/share/K_K_3", "dump/learnability/set_00", "dump/probability/set_14"} <= set(
        metrics)
    assert sum(v for k, v in metrics.items() if k.startswith("dump/share/")) <= 1
    assert metric_names(["a b", "a/b", "a_b"]) == {"a b": "a_b", "a/b": "a_b-2", "a_b": "a_b-3"}


def test_numbers_name_distributions_and_blank_ones_are_missing():
    sampler = _sampler([1, 2.0, "2", 2.5])
    assert {d: [e.prompt_id for e in pool] for d, pool in sampler.pools.items()} == {
        "1": ["#1"], "2": ["#2", "#3"], "2.5": ["#4"]}
    with pytest.raises(SamplerError, match=r"2 of its 4 prompts have none \(#2, #4\)"):
        _sampler(["a", " ", "b", None])


def test_a_dataset_without_the_column_says_what_to_do():
    config = RunConfig(prompt_sampler="dump", dataset="d.jsonl", dump_column="topic")
    dataset = PromptDataset(examples=_examples(["a", "b"]))
    with pytest.raises(SamplerError, match="named by the dataset's 'topic' column, and none of "
                                           "its prompts has one. Give every row a distribution"):
        make_sampler(config, dataset)
    with pytest.raises(SamplerError, match="'source' column"):
        make_sampler(RunConfig(prompt_sampler="dump", dataset="d.jsonl"), get_task("arithmetic"))


def test_the_config_refuses_dump_without_a_dataset():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"prompt_sampler": "dump"})
    assert "choose a dataset" in bad.value.errors["prompt_sampler"]
    for name, value in (("dump_window", 0), ("dump_temperature", 0.0),
                        ("dump_exploration", -1.0), ("dump_column", " ")):
        with pytest.raises(ConfigError) as bad:
            RunConfig.from_dict({"prompt_sampler": "dump", "dataset": "d.jsonl", name: value})
        assert name in bad.value.errors


SOURCES = ["easy"] * 4 + ["hard"] * 4 + ["odd"] * 2


def _odd_length(prompts, completions, **columns):
    """1 for a completion with an odd number of characters: a coin flip for the random tiny
    model, so that advantages are not all 0."""
    return [float(len(c) % 2) for c in completions]


@pytest.fixture
def sourced_dataset(tmp_path, monkeypatch):
    """Ten sums from three distributions, scored by `_odd_length` instead of correctness."""
    monkeypatch.setattr(training.spec.rewards, "correct_answer", _odd_length)
    path = tmp_path / "sourced.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Compute {i} + 1.", "answer": i + 1,
                                        "source": source}) + "\n"
                            for i, source in enumerate(SOURCES)), encoding="utf-8")
    return path


def test_the_dataset_keeps_the_distribution_column_only_when_asked(sourced_dataset):
    assert "source" not in load_prompt_dataset(sourced_dataset).examples[0].columns
    kept = load_prompt_dataset(sourced_dataset, ["source", "missing"]).examples
    assert [e.columns["source"] for e in kept] == SOURCES
    assert all(e.columns["missing"] is None for e in kept)


def _two_steps(config: RunConfig) -> ListReporter:
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    return reporter


def _check_two_steps(reporter: ListReporter) -> None:
    """Shares that add up, and each distribution's learnability equal to the mean |Â| of its
    completions so far (every completion is logged; the window of 300 holds them all)."""
    by_source = dict(zip((f"#{i}" for i in range(1, 11)), SOURCES))
    seen: dict[str, list[float]] = {d: [] for d in set(SOURCES)}
    steps = zip(reporter.of_kind("metrics"), reporter.of_kind("rollouts"), strict=True)
    for number, (metrics, rollouts) in enumerate(steps, start=1):
        values, items = metrics["values"], rollouts["items"]
        assert metrics["step"] == rollouts["step"] == number and len(items) == 6
        prompts = Counter(item["extra"]["source"] for item in items[::3])
        for item in items:
            assert item["extra"]["source"] == by_source[item["prompt_id"]]
            seen[item["extra"]["source"]].append(abs(item["advantage"]))
        for d, magnitudes in seen.items():
            assert values[f"dump/share/{d}"] == prompts[d] / 2
            assert values[f"dump/learnability/{d}"] == pytest.approx(
                sum(magnitudes) / len(magnitudes) if magnitudes else 0.0, abs=1e-4)
        assert sum(v for k, v in values.items()
                   if k.startswith("dump/probability/")) == pytest.approx(1.0)
    assert number == 2 and any(map(any, seen.values()))  # some |Â| > 0: the check says something


def test_two_steps_on_a_dataset_with_sources_with_transformers(tiny_config, sourced_dataset):
    config = tiny_config.with_changes(dataset=str(sourced_dataset), prompt_sampler="dump",
                                      rollouts_logged_per_step=6)
    _check_two_steps(_two_steps(config))


def test_two_steps_on_a_dataset_with_sources_with_vllm(tiny_model, tmp_path, sourced_dataset):
    pytest.importorskip("vllm")
    from tests.training.rollouts.test_vllm_backend import save_tiny_policy

    policy = save_tiny_policy(tiny_model, tmp_path, heads=2)
    config = RunConfig.from_dict({
        "model": str(policy), "rollout_backend": "vllm", "max_steps": 2, "prompts_per_step": 2,
        "group_size": 3, "max_new_tokens": 6, "micro_batch_size": 4,
        "rollouts_logged_per_step": 6, "dataset": str(sourced_dataset),
        "prompt_sampler": "dump"}, paths=True)
    reporter = _two_steps(config)
    assert any("rollouts by vllm" in e["message"] for e in reporter.of_kind("log"))
    _check_two_steps(reporter)


def test_a_run_resumed_from_a_checkpoint_draws_the_uninterrupted_runs_prompts(
        tiny_config, sourced_dataset, tmp_path):
    config = tiny_config.with_changes(
        dataset=str(sourced_dataset), prompt_sampler="dump", max_steps=4, checkpoint_every=2,
        rollouts_logged_per_step=6, learning_rate=1e-2, dump_window=4, dump_temperature=0.5)
    reporter, resumed = run_and_resume(config, tmp_path, at=2)

    def by_step(run: ListReporter, kind: str) -> dict[int, dict]:
        return {event["step"]: event for event in run.of_kind(kind) if event["step"] > 2}

    want, have = by_step(reporter, "rollouts"), by_step(resumed, "rollouts")
    assert sorted(have) == [3, 4]
    for step in (3, 4):
        assert [i["prompt_id"] for i in have[step]["items"]] == \
            [i["prompt_id"] for i in want[step]["items"]]
    want, have = by_step(reporter, "metrics"), by_step(resumed, "metrics")
    for step in (3, 4):
        dump = {k: v for k, v in want[step]["values"].items() if k.startswith("dump/")}
        assert {k: have[step]["values"][k] for k in dump} == pytest.approx(dump, abs=1e-6)
        assert any(v > 0 for k, v in dump.items() if "/learnability/" in k)
