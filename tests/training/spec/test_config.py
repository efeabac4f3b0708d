import doctest

import pytest

import training.spec.config

from training.algorithms.grpo import GRPOConfig
from training.spec.config import ConfigError, RunConfig


def test_every_bad_field_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"group_size": 0, "learning_rate": "fast", "loss_type": "mean",
                             "colour": "blue"})
    assert set(caught.value.errors) == {"group_size", "learning_rate", "loss_type", "colour"}
    assert caught.value.errors["colour"] == "unknown setting"
    assert "must be one of: grpo, dapo, dr_grpo, bnpo" in caught.value.errors["loss_type"]


@pytest.mark.parametrize("settings, field, message", [
    ({"group_size": 1}, "group_size", "at least 2"),
    ({"algorithm": "dpo"}, "dataset", "preference dataset"),
    ({"beta": 0.1, "reference": "none"}, "reference", "needs a reference"),
    ({"reference": "soup", "reference_soup": "builtin:smollm2-135m-instruct"}, "reference_soup",
     "exactly two"),
    ({"filter_low": 0.5, "filter_high": 0.5}, "filter_high", "above the lower bound"),
    ({"prompt_sampler": "spo_priority"}, "prompt_sampler", "needs the SPO algorithm"),
    ({"kl_target": 0.1}, "kl_target", "initial β"),
    ({"devices": 3, "prompts_per_step": 8}, "prompts_per_step", "multiple of 3"),
    ({"devices": 2, "algorithm": "ppo"}, "algorithm", "PPO runs on one device"),
    ({"devices": 2, "rollout_backend": "vllm"}, "rollout_backend", "transformers"),
    ({"devices": 2, "prompt_sampler": "difficulty_filter"}, "prompt_sampler", "one device"),
    ({"devices": 2, "loss_type": "bnpo"}, "loss_type", "micro-batch"),
    ({"devices": 2, "beta": 0.1, "kl_placement": "reward"}, "kl_placement", "enters the loss"),
    ({"devices": 2, "top_entropy_quantile": 0.5}, "top_entropy_quantile", "set 1"),
])
def test_settings_that_do_not_go_together_are_named(settings, field, message):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict(settings)
    assert message in caught.value.errors[field]


def test_spo_takes_one_completion_per_prompt():
    assert RunConfig.from_dict({"algorithm": "spo", "group_size": 1}).group_size == 1


def test_booleans_are_strict_and_numbers_are_not_booleans():
    assert RunConfig.from_dict({"mask_truncated": True}).mask_truncated is True
    with pytest.raises(ConfigError, match="expected true or false"):
        RunConfig.from_dict({"mask_truncated": "yes"})
    with pytest.raises(ConfigError, match="expected a number"):
        RunConfig.from_dict({"max_steps": True})


def test_a_config_saved_before_a_field_existed_gets_its_default():
    old = {"algorithm": "grpo", "model": "builtin:smollm2-135m-instruct", "epsilon": 0.1}
    config = RunConfig.from_dict(old)
    assert config.algorithm_settings.scale_rewards == "group"
    assert (config.loss_type, config.epsilon_high) == ("grpo", 0.0)


def test_the_upper_clip_defaults_to_the_lower_one():
    assert GRPOConfig.from_run_config(RunConfig(epsilon=0.1)).epsilon_high == 0.1
    assert GRPOConfig.from_run_config(RunConfig(epsilon=0.2, epsilon_high=0.28)).epsilon_high \
        == 0.28


def test_extra_rewards_are_checked_by_name_and_weight():
    assert RunConfig.from_dict({"extra_rewards": "think_format=0.5"}).extra_rewards \
        == "think_format=0.5"
    with pytest.raises(ConfigError, match="unknown reward 'brevity'"):
        RunConfig.from_dict({"extra_rewards": "brevity=1"})
    with pytest.raises(ConfigError, match="must be a number"):
        RunConfig.from_dict({"extra_rewards": "think_format=lots"})


def test_doctests_pass():
    assert doctest.testmod(training.spec.config).failed == 0


def test_a_config_stored_with_every_algorithms_settings_still_loads():
    # Before algorithms owned their settings, every stored config held all of them, flat.
    stored = {"algorithm": "ppo", "group_size": 4, "scale_rewards": "batch", "gae_lambda": 0.9,
              "value_coef": 0.25, "spo_half_life": 0.1, "dpo_beta": 0.3, "dpo_loss": "ipo"}
    config = RunConfig.from_dict(stored)
    own = config.algorithm_settings
    assert (own.gae_lambda, own.value_coef) == (0.9, 0.25)
    saved = config.to_dict()
    assert saved["gae_lambda"] == 0.9 and not {"scale_rewards", "spo_half_life",
                                                "dpo_beta"} & set(saved)
    assert RunConfig.from_dict(saved) == config


def test_a_nested_config_equals_its_flat_form():
    nested = {"algorithm": {"algorithm": "spo", "spo_half_life": 0.2},
              "rollout": {"group_size": 1}, "model": "builtin:smollm2-135m-instruct"}
    flat = {"algorithm": "spo", "spo_half_life": 0.2, "group_size": 1,
            "model": "builtin:smollm2-135m-instruct"}
    assert RunConfig.from_dict(nested) == RunConfig.from_dict(flat)


def test_every_setting_belongs_to_a_known_section():
    from training.spec.settings import SECTIONS

    assert {f.metadata["section"] for f, _ in RunConfig.every_field()} <= set(SECTIONS)


def test_k1_in_the_loss_is_refused_unless_the_bias_correction_is_on():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"beta": 0.1, "kl_estimator": "k1"})
    assert "zero gradient in expectation" in bad.value.errors["kl_estimator"]
    RunConfig.from_dict({"beta": 0.1, "kl_estimator": "k1", "kl_bias_correction": True})
    RunConfig.from_dict({"beta": 0.1, "kl_estimator": "k1", "kl_placement": "reward"})


@pytest.mark.parametrize("devices", [0, 65])
def test_devices_are_bounded(devices):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"devices": devices})
    assert "devices" in caught.value.errors


def test_a_data_parallel_grpo_run_is_valid():
    config = RunConfig.from_dict({"devices": 4, "prompts_per_step": 8, "loss_type": "dapo"})
    assert config.devices == 4 and config.data_parallel_errors() == {}


def test_sharding_is_ddp_unless_fsdp_is_asked_for():
    assert RunConfig().sharding == "ddp"
    config = RunConfig.from_dict({"devices": 2, "prompts_per_step": 8, "sharding": "fsdp"})
    assert config.sharding == "fsdp" and config.data_parallel_errors() == {}
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"devices": 2, "sharding": "zero3"})
    assert "sharding" in caught.value.errors


@pytest.mark.parametrize(("settings", "field", "says"), [
    ({"lora_rank": 8}, "lora_rank", "set sharding to ddp"),
    ({"beta": 0.04, "reference": "ema"}, "reference", "initial reference"),
    ({"eval_every": 5}, "eval_every", "first process alone"),
])
def test_what_a_sharded_run_cannot_do_is_refused_by_field(settings, field, says):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict({"devices": 2, "prompts_per_step": 8, "sharding": "fsdp",
                             **settings})
    assert says in caught.value.errors[field]
    # the same settings on one device, or with DDP, are fine
    RunConfig.from_dict({"devices": 1, "sharding": "fsdp", **settings})
    RunConfig.from_dict({"devices": 2, "prompts_per_step": 8, **settings})
