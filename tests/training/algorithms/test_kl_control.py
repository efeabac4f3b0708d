"""The KL coefficient: the adaptive controller by hand, and the KL placed in the loss or the
reward of a run."""

from __future__ import annotations

import dataclasses
import doctest

import pytest

import training.algorithms.kl_control
from training.spec.events import ListReporter
from training.algorithms.kl_control import KLController
from training.loops.train import Outcome, train


def _metrics(config) -> list[dict[str, float]]:
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED
    return [event["values"] for event in reporter.of_kind("metrics")]


def test_doctests_pass():
    results = doctest.testmod(training.algorithms.kl_control)
    assert results.attempted > 0 and results.failed == 0


def test_two_updates_by_hand():
    controller = KLController(0.2, target=0.1, horizon=50)
    controller.update(kl=0.11, completions=10)  # e = 0.11/0.1 − 1 = 0.1, within the clip
    assert controller.beta == pytest.approx(0.2 * (1 + 0.1 * 10 / 50))  # 0.204
    controller.update(kl=0.0, completions=25)  # e = −1, clipped to −0.2
    assert controller.beta == pytest.approx(0.204 * (1 - 0.2 * 25 / 50))  # 0.1836


def test_controller_state_goes_on_where_it_stopped():
    controller = KLController(0.2, target=0.1, horizon=50)
    controller.update(kl=0.3, completions=10)
    restored = KLController(0.2, target=0.1, horizon=50)
    restored.load_state_dict(controller.state_dict())
    for c in (controller, restored):
        c.update(kl=0.05, completions=10)
    assert restored.beta == controller.beta != 0.2


def test_adaptive_beta_falls_below_the_target_and_rises_above_it(tiny_config,
                                                                  length_rewarded):
    # Step 1 measures KL = 0 (π_θ = π_ref before the update): below any target, so β falls.
    # After a large step the KL is far above a tiny target, so β rises.
    config = dataclasses.replace(tiny_config, max_steps=3, beta=0.1, kl_target=1e-6,
                                 kl_horizon=30, learning_rate=1e-2)
    steps = _metrics(config)
    n = config.prompts_per_step * config.group_size  # completions per step
    assert steps[0]["kl/mean"] == pytest.approx(0.0, abs=1e-9)
    assert steps[0]["kl/sequence_mean"] == pytest.approx(0.0, abs=1e-9)
    assert steps[1]["kl/sequence_mean"] > 1.2e-6  # so the error clips to +0.2
    betas = [values["kl/beta"] for values in steps]
    assert betas == pytest.approx([0.1, 0.1 * (1 - 0.2 * n / 30),
                                   0.1 * (1 - 0.2 * n / 30) * (1 + 0.2 * n / 30)])


def test_kl_in_the_reward_shapes_it_and_leaves_the_loss(tiny_config, length_rewarded):
    # Step 1 is the same in both runs (the KL is 0 there), so step 2 samples the same
    # completions from the same policy. With one pass the ratio is 1, and group-centred
    # advantages sum to 0 in every group, so GRPO's policy loss is exactly its KL term.
    config = dataclasses.replace(tiny_config, beta=0.5, learning_rate=1e-2)
    in_loss = _metrics(config)[1]
    in_reward = _metrics(dataclasses.replace(config, kl_placement="reward"))[1]
    assert in_reward["kl/mean"] == pytest.approx(in_loss["kl/mean"], rel=1e-5)
    assert in_reward["kl/sequence_mean"] > 1e-3
    assert in_reward["reward/shaped_mean"] == pytest.approx(
        in_reward["reward/mean"] - 0.5 * in_reward["kl/sequence_mean"], rel=1e-5, abs=1e-7)
    assert in_reward["loss/policy"] == pytest.approx(0.0, abs=1e-6)
    assert in_loss["loss/policy"] == pytest.approx(0.5 * in_loss["kl/mean"], rel=1e-4)
    assert "reward/shaped_mean" not in in_loss
    # The KL per completion, which adaptive KL compares with its target, in either placement
    assert in_loss["kl/sequence_mean"] == pytest.approx(in_reward["kl/sequence_mean"], rel=1e-4)
    lengths = in_loss["completion/length_mean"]
    assert in_loss["kl/sequence_mean"] == pytest.approx(in_loss["kl/mean"] * lengths, rel=0.5)
