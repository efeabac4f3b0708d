"""Prompt samplers: uniform as the task samples, SPO priority, curriculum pacing, the difficulty
filter's bounds, and state that resumes exactly."""

import json
import random
from collections import Counter

import pytest
import torch

from training.algorithms.spo import ValueTracker
from training.spec.config import RunConfig
from training.spec.prompt_dataset import PromptDataset
from training.samplers import (
    CurriculumSampler,
    SamplerError,
    SPOPrioritySampler,
    UniformSampler,
    in_bounds,
    make_sampler,
)
from training.spec.tasks import Example, get_task


def _dataset(difficulties: list) -> PromptDataset:
    return PromptDataset(examples=tuple(
        Example(prompt_id=f"#{i}", prompt=f"q{i}", columns={"answer": "1", "difficulty": d})
        for i, d in enumerate(difficulties, start=1)))


def _ids(examples: list[Example]) -> list[str]:
    return [e.prompt_id for e in examples]


def _resumed(sampler, fresh):
    """`fresh` given `sampler`'s state, after a trip through JSON as in a checkpoint."""
    fresh.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    return fresh


@pytest.mark.parametrize("task", [get_task("arithmetic"), _dataset([1, 2, 3, 4, 5])])
def test_uniform_draws_what_the_task_draws_with_the_same_seed(task):
    sampler = make_sampler(RunConfig(seed=7), task)
    rng = random.Random(7)
    for _ in range(3):
        assert _ids(sampler.sample(4)) == _ids(task.sample(rng, 4))


def test_the_difficulty_filter_draws_uniformly():
    config = RunConfig(seed=3, prompt_sampler="difficulty_filter")
    task = get_task("arithmetic")
    assert _ids(make_sampler(config, task).sample(8)) == _ids(task.sample(random.Random(3), 8))


def test_a_resumed_uniform_sampler_goes_on_as_if_uninterrupted():
    task = get_task("arithmetic")
    sampler = UniformSampler(task, seed=0)
    sampler.sample(8)
    resumed = _resumed(sampler, UniformSampler(task, seed=0))
    assert [_ids(resumed.sample(8)) for _ in range(2)] == [_ids(sampler.sample(8))
                                                           for _ in range(2)]


def test_arithmetic_lists_every_question_once():
    assert len({e.prompt_id for e in get_task("arithmetic", "all").examples}) == 100
    examples = get_task("arithmetic").examples  # the training split
    assert len(examples) == len({e.prompt_id for e in examples}) == 92
    drawn = get_task("arithmetic").sample(random.Random(0), 5)
    assert all(example in examples for example in drawn)


def test_spo_priority_prefers_prompts_of_uncertain_outcome():
    task = _dataset([None] * 4)
    tracker = ValueTracker()
    for pid in ("#2", "#3", "#4"):  # known to be solved: v̂ near 1, weight near ε = 0.05
        tracker.alpha[pid], tracker.beta[pid] = 1.0, 0.0
    sampler = SPOPrioritySampler(task.examples, tracker, seed=0)
    # #1 has v̂ = ½: weight 0.55 of 0.7 in all
    firsts = Counter(sampler.sample(1)[0].prompt_id for _ in range(2000))
    assert firsts["#1"] / 2000 == pytest.approx(0.55 / 0.7, abs=0.03)
    # Two without replacement: #1 is left out only if two of the others come first,
    # 3 · 0.05/0.7 · 0.1/0.65 of the time.
    pairs = [_ids(sampler.sample(2)) for _ in range(2000)]
    assert all(len(set(pair)) == 2 for pair in pairs)
    left_out = sum("#1" not in pair for pair in pairs) / 2000
    assert left_out == pytest.approx(3 * 0.05 / 0.7 * 0.1 / 0.65, abs=0.015)


def test_spo_priority_draws_with_replacement_only_beyond_the_pool():
    task = _dataset([None] * 3)
    sampler = make_sampler(RunConfig(algorithm="spo", group_size=1,
                                     prompt_sampler="spo_priority"), task, ValueTracker())
    assert sorted(_ids(sampler.sample(3))) == ["#1", "#2", "#3"]
    assert len(sampler.sample(5)) == 5


def test_spo_priority_needs_the_runs_tracker():
    with pytest.raises(TypeError):
        make_sampler(RunConfig(algorithm="spo", group_size=1, prompt_sampler="spo_priority"),
                     get_task("arithmetic"))


def test_a_resumed_spo_sampler_with_its_tracker_goes_on_as_if_uninterrupted():
    task = get_task("arithmetic")
    tracker = ValueTracker()
    sampler = SPOPrioritySampler(task.examples, tracker, seed=0)
    first = sampler.sample(8)
    tracker.update(_ids(first), torch.tensor([1.0, 0.0] * 4), torch.zeros(8))
    tracker_copy = ValueTracker()
    tracker_copy.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
    resumed = _resumed(sampler, SPOPrioritySampler(task.examples, tracker_copy, seed=0))
    assert _ids(resumed.sample(8)) == _ids(sampler.sample(8))


def test_curriculum_widens_from_the_easiest_quarter_to_all_by_the_last_step():
    sampler = CurriculumSampler(_dataset([8, 1, 7, 2, 6, 3, 5, 4]).examples, max_steps=5, seed=0)
    assert [sampler.allowed_fraction(s) for s in range(1, 6)] == [0.25, 0.4375, 0.625, 0.8125,
                                                                   1.0]
    easiest = {"#2": 1, "#4": 2, "#6": 3, "#8": 4, "#7": 5, "#5": 6, "#3": 7, "#1": 8}
    drawn = []
    for _ in range(5):
        drawn.append(_ids(sampler.sample(2)))
        sampler.observe([], torch.zeros(0), torch.zeros(0), group_size=1)
    # step 1: ⌈0.25·8⌉ = 2 prompts, the two easiest
    assert sorted(drawn[0]) == ["#2", "#4"]
    # step 3: ⌈0.625·8⌉ = 5 easiest
    assert all(easiest[pid] <= 5 for pid in drawn[2])


def test_curriculum_pool_is_never_smaller_than_the_batch():
    sampler = CurriculumSampler(_dataset([1, 2, 3, 4, 5, 6, 7, 8]).examples, max_steps=10,
                                seed=0)
    assert sorted(_ids(sampler.sample(4))) == ["#1", "#2", "#3", "#4"]


def test_a_resumed_curriculum_keeps_its_step():
    examples = _dataset(list(range(20))).examples
    sampler = CurriculumSampler(examples, max_steps=4, seed=0)
    for _ in range(2):
        sampler.sample(3)
        sampler.observe([], torch.zeros(0), torch.zeros(0), group_size=1)
    resumed = _resumed(sampler, CurriculumSampler(examples, max_steps=4, seed=0))
    assert resumed.step == 3
    assert _ids(resumed.sample(3)) == _ids(sampler.sample(3))


def test_a_curriculum_without_difficulties_says_what_to_do():
    config = RunConfig(prompt_sampler="curriculum", dataset="d.jsonl")
    with pytest.raises(SamplerError, match="none of its prompts has one. Upload the dataset with "
                                           "a difficulty column"):
        make_sampler(config, _dataset([None, None]))
    with pytest.raises(SamplerError, match=r"2 of its 3 prompts have none \(#1, #3\)"):
        make_sampler(config, _dataset([None, 2, None]))
    with pytest.raises(SamplerError):
        make_sampler(config, get_task("arithmetic"))


def test_in_bounds_keeps_groups_whose_pass_rate_is_strictly_inside():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0,  # pass rate 1
                            0.0, 0.0, 0.0, 0.0,  # 0
                            1.0, 0.0, 0.0, 0.0,  # ¼
                            1.0, 1.0, 0.0, 1.0])  # ¾
    assert in_bounds(rewards, 4, 0.0, 1.0).tolist() == [False, False, True, True]
    assert in_bounds(rewards, 4, 0.25, 1.0).tolist() == [False, False, False, True]
    assert in_bounds(rewards, 4, 0.0, 0.75).tolist() == [False, False, True, False]


def test_in_bounds_counts_a_positive_reward_as_a_pass():
    rewards = torch.tensor([0.5, -0.2, 0.0, 0.0, 0.3, 0.1])
    assert in_bounds(rewards, 3, 0.0, 0.5).tolist() == [True, False]  # rates ⅓ and ⅔
