"""PRL's step ends, process terms and per-token advantages, against hand-computed tensors, and
two-step runs on the tiny model."""

import pytest
import torch

from training.algorithms.prl import process_terms, step_ends, step_metrics
from training.loops.train import Outcome, train
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter


def test_each_token_takes_the_log_ratio_from_its_steps_end_on():
    # Completion of 5 tokens, steps of 2: tokens 0-1, 2-3, 4 (the last always ends a step).
    # ℓ = 0.4, 0.2, 0.1, 0.3, 0.6; from the ends: Σ_{j ≥ 1} = 1.2, Σ_{j ≥ 3} = 0.9, Σ_{j ≥ 4} =
    # 0.6. With η = 10 the process terms are −0.12, −0.09, −0.06.
    old = torch.tensor([[0.4, 0.2, 0.1, 0.3, 0.6]])
    ref = torch.zeros(1, 5)
    mask = torch.ones(1, 5)
    ends = step_ends(torch.zeros(1, 5), mask, "length", 2)
    assert ends.int().tolist() == [[0, 1, 0, 1, 1]]
    process = process_terms(old, ref, mask, ends, eta=10.0)
    assert process[0].tolist() == pytest.approx([-0.12, -0.12, -0.09, -0.09, -0.06])


def test_padding_neither_counts_nor_gets_a_value():
    # Second row: 2 tokens and 2 pads whose (garbage) log-ratios must not count.
    old = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    ends = step_ends(torch.zeros(2, 4), mask, "length", 3)
    assert ends.int().tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    process = process_terms(old, torch.zeros(2, 4), mask, ends, eta=1.0)
    # row 2: both tokens are one step, ending at token 1: Σ_{j ≥ 1} ℓ = 0.5
    assert process.tolist() == [[-2.0, -2.0, -2.0, -1.0], [-0.5, -0.5, 0.0, 0.0]]


def test_newline_steps_end_at_the_newline_token():
    ids = torch.tensor([[7, 7, 198, 7, 198, 7]])
    ends = step_ends(ids, torch.ones(1, 6), "blank_line", 0, step_token=198)
    assert ends.int().tolist() == [[0, 0, 1, 0, 1, 1]]


def test_step_metrics_report_each_steps_mean_advantage_and_the_spread():
    advantages = torch.tensor([[1.0, 1.0, 3.0], [2.0, 4.0, 0.0]])
    process = torch.tensor([[0.0, 0.0, 2.0], [-1.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ends = torch.tensor([[False, True, True], [True, True, False]])
    metrics = step_metrics(advantages, process, mask, ends)
    assert metrics["prl/step_advantage/1"] == pytest.approx((1 + 1 + 2) / 3)
    assert metrics["prl/step_advantage/2"] == pytest.approx((3 + 4) / 2)
    assert "prl/step_advantage/3" not in metrics
    assert metrics["prl/steps_mean"] == 2.0
    assert metrics["prl/process_mean"] == pytest.approx(0.4)
    assert metrics["prl/process_std"] == pytest.approx(torch.tensor(
        [0.0, 0.0, 2.0, -1.0, 1.0]).std().item())


def test_prl_needs_a_reference_and_groups():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "prl", "reference": "none"})
    assert "reference" in bad.value.errors
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "prl", "group_size": 1})
    assert "at least 2" in bad.value.errors["group_size"]
    assert RunConfig.from_dict({"algorithm": "prl"}).uses_reference  # even at β = 0


@pytest.mark.parametrize("rule", ["length", "newline"])
def test_two_steps_give_process_advantages_and_the_token_view_shows_them(tiny_config, rule,
                                                                       length_rewarded):
    # Step 1: π_old = π_ref, so every process term is 0 and the advantages are GRPO's. After a
    # large update, step 2's tokens of one completion differ by the log-ratio still to come.
    config = tiny_config.with_changes(algorithm="prl", prl_eta=0.5, prl_step_rule=rule,
                                      prl_step_length=2, learning_rate=1e-2,
                                      token_details_per_step=4, rollouts_logged_per_step=4)
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    first, second = (event["values"] for event in reporter.of_kind("metrics"))
    assert first["prl/process_mean"] == pytest.approx(0.0, abs=1e-6)
    assert first["prl/process_std"] == pytest.approx(0.0, abs=1e-6)
    assert second["prl/process_std"] > 0 and "prl/step_advantage/1" in second
    assert "kl/beta" in second and second["kl/beta"] == 0.0  # a reference, no penalty
    tokens = [item["tokens"] for item in reporter.of_kind("rollouts")[1]["items"]
              if item["tokens"]]
    assert tokens and all(len(t["process"]) == len(t["text"]) for t in tokens)
    if rule == "length":  # steps of 2 tokens: the values change along a completion
        assert any(len(set(t["advantage"])) > 1 for t in tokens)
    else:  # one step up to each newline: a completion without one has a single value
        plain = [t for t in tokens if "\n" not in t["text"]]
        assert plain and all(len(set(t["advantage"])) == 1 for t in plain)
    # the advantage shown is the outcome advantage plus the process term, token by token
    item = reporter.of_kind("rollouts")[1]["items"][0]
    outcome = item["advantage"] - sum(item["tokens"]["process"]) / len(item["tokens"]["process"])
    assert [a - p for a, p in zip(item["tokens"]["advantage"], item["tokens"]["process"])] == \
        pytest.approx([outcome] * len(item["tokens"]["process"]), abs=1e-3)
