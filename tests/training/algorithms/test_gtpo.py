"""GTPO's conflict tokens, entropy filter and per-token advantages, against hand-computed
tensors, and two-step runs on the tiny model."""

import dataclasses

import pytest
import torch

from training.algorithms.gtpo import completion_ids, conflict_weights, entropy_shaped
from training.loops.train import Outcome, train
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter


def test_a_shared_opening_and_ending_are_conflict_runs_and_padding_is_not():
    # G = 2: o_0 (Â > 0) = 1 2 7 4, o_1 (Â < 0) = 1 5 4 and a pad. Aligned from the start they
    # share "1"; aligned from the end, "4". Only those runs conflict; o_1's pad is no token.
    ids = torch.tensor([[1, 2, 7, 4], [1, 5, 4, -1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    delta, conflicts = conflict_weights(ids, mask, torch.tensor([0.5, -0.5]), 2, 2.0)
    assert delta.tolist() == [[2.0, 1.0, 1.0, 2.0], [0.0, 1.0, 0.0, 0.0]]
    assert conflicts.sum(dim=1).tolist() == [2, 2]


def test_a_run_stops_at_the_first_token_that_does_not_conflict():
    # "1 2 3" and "1 9 3": position 2 matches too, but the run from the start broke at 1, and
    # from the end the last tokens (3, 3) match and then 2 and 9 do not.
    ids = torch.tensor([[1, 2, 3], [1, 9, 3]])
    delta, conflicts = conflict_weights(ids, torch.ones(2, 3), torch.tensor([1.0, -1.0]), 2,
                                        3.0)
    assert delta.tolist() == [[3.0, 1.0, 3.0], [0.0, 1.0, 0.0]]
    assert conflicts.sum(dim=1).tolist() == [2, 2]


def test_groups_do_not_share_conflicts_and_zero_advantage_has_none():
    # Two groups of 2: identical completions across groups never conflict; a group whose
    # advantages are 0 (all rewards equal) has no positive nor negative completion.
    ids = torch.tensor([[4, 4], [4, 4], [4, 4], [4, 4]])
    delta, conflicts = conflict_weights(ids, torch.ones(4, 2),
                                        torch.tensor([1.0, 0.0, 0.0, 0.0]), 2, 2.0)
    assert delta.tolist() == [[1.0, 1.0]] * 4 and conflicts.sum(dim=1).tolist() == [0, 0, 0, 0]


def test_high_entropy_completions_are_left_out_and_the_rest_pay_for_theirs():
    advantages = torch.tensor([1.0, -1.0, 0.5])
    shaped, kept = entropy_shaped(advantages, torch.tensor([0.2, 0.7, 0.71]), 0.7, 0.5)
    assert shaped.tolist() == pytest.approx([0.9, -1.35, 0.0])
    assert kept.tolist() == [True, True, False]


def test_completion_ids_mark_padding():
    input_ids = torch.tensor([[9, 9, 1, 2], [9, 9, 3, 0]])
    assert completion_ids(input_ids, torch.tensor([[1, 1], [1, 0]])).tolist() == [[1, 2],
                                                                                 [3, -1]]


def test_gtpo_refuses_a_reference_and_a_group_of_one():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "gtpo", "beta": 0.1})
    assert bad.value.errors == {"beta": "GTPO uses no reference model: set β to 0"}
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "gtpo", "group_size": 1})
    assert "at least 2" in bad.value.errors["group_size"]


def test_two_steps_report_conflicts_and_per_token_advantages(tiny_config):
    config = dataclasses.replace(tiny_config, algorithm="gtpo", token_details_per_step=4,
                                 rollouts_logged_per_step=6)
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    metrics = [event["values"] for event in reporter.of_kind("metrics")]
    assert [set(values) >= {"gtpo/conflict_fraction", "gtpo/filtered_fraction",
                            "gtpo/entropy_mean"} for values in metrics] == [True, True]
    assert all(0 <= v["gtpo/conflict_fraction"] <= 1 for v in metrics)
    # The random tiny model is uncertain (entropy ~ ln of its vocabulary): above 0.7 nats every
    # completion is left out, and nothing is learnt.
    assert all(v["gtpo/filtered_fraction"] == 1.0 for v in metrics)
    assert all(v["advantage/zero_fraction"] == 1.0 for v in metrics)
    items = reporter.of_kind("rollouts")[0]["items"]
    tokens = [item["tokens"] for item in items if item["tokens"] is not None]
    assert tokens and all(set(t["conflict"]) <= {0.0, 1.0} for t in tokens)
    assert all(len(t["conflict"]) == len(t["text"]) for t in tokens)


def test_with_a_higher_threshold_the_update_moves_the_weights(tiny_config):
    config = tiny_config.with_changes(algorithm="gtpo", gtpo_entropy_threshold=20.0, max_steps=1)
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    values = reporter.of_kind("metrics")[0]["values"]
    assert values["gtpo/filtered_fraction"] == 0.0
    assert values["optim/grad_norm"] > 0
