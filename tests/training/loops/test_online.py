import dataclasses
import math

import pytest
import torch

from training.spec.events import ListReporter
from training.policies.loading import load_policy
from training.rollouts.logprobs import completion_logprobs
from training.loops.train import Outcome, train

STEP_METRICS = {
    "reward/mean", "reward/std", "reward/correct", "advantage/mean", "advantage/std",
    "loss/policy", "entropy/mean", "completion/length_mean", "completion/length_max",
    "completion/truncated_fraction", "groups/degenerate_fraction", "clip/low_fraction",
    "clip/high_fraction", "optim/grad_norm", "optim/lr", "time/generate_s", "time/update_s",
    "time/step_s", "perf/tokens_per_s", "perf/peak_memory_gb",
}
ROLLOUT_FIELDS = {"prompt", "completion", "reward", "rewards", "advantage", "group",
                  "sample_index", "prompt_id", "completion_tokens", "truncated", "extra",
                  "tokens", "group_degenerate"}


def _run(config, **kwargs):
    reporter = ListReporter()
    outcome = train(config, reporter, **kwargs)
    return outcome, reporter


def test_two_steps_report_every_metric_finite(tiny_config):
    outcome, reporter = _run(tiny_config)
    assert outcome is Outcome.COMPLETED
    [status] = reporter.of_kind("status")
    assert status["status"] == "running" and status["device"] == "cpu"
    assert status["total_steps"] == 2
    metrics = reporter.of_kind("metrics")
    assert [m["step"] for m in metrics] == [1, 2]
    for event in metrics:
        assert STEP_METRICS <= set(event["values"])  # non-finite values would have been dropped
        assert all(math.isfinite(v) for v in event["values"].values())
        assert "kl/mean" not in event["values"]  # β = 0: no reference model
    assert [(p["step"], p["total_steps"]) for p in reporter.of_kind("progress")] == [(1, 2), (2, 2)]


def test_rollouts_carry_the_event_fields(tiny_config):
    _, reporter = _run(tiny_config)
    rollouts = reporter.of_kind("rollouts")
    assert [r["step"] for r in rollouts] == [1, 2]
    items = rollouts[0]["items"]
    assert len(items) == tiny_config.rollouts_logged_per_step
    for item in items:
        assert set(item) == ROLLOUT_FIELDS
        assert 1 <= item["completion_tokens"] <= tiny_config.max_new_tokens
        assert set(item["rewards"]) == {"correct"}
        a, b = item["prompt_id"].split("+")
        assert item["extra"]["answer"] == str(int(a) + int(b))
    assert [(i["group"], i["sample_index"]) for i in items] == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_degenerate_flags_describe_whole_groups_even_when_logged_in_part(tiny_config):
    whole = dataclasses.replace(tiny_config, rollouts_logged_per_step=6)  # 2 groups of 3
    flags = {}
    for step in _run(whole)[1].of_kind("rollouts"):
        for group in (0, 1):
            rewards = {i["reward"] for i in step["items"] if i["group"] == group}
            flags[step["step"], group] = len(rewards) == 1
            assert all(i["group_degenerate"] == flags[step["step"], group]
                       for i in step["items"] if i["group"] == group)
    # Logging 4 of 6 keeps one completion of group 1: it still carries its whole group's flag.
    for step in _run(tiny_config)[1].of_kind("rollouts"):  # same seed, same rollouts
        for item in step["items"]:
            assert item["group_degenerate"] == flags[step["step"], item["group"]]


def test_the_same_seed_gives_the_same_first_step(tiny_config):
    config = dataclasses.replace(tiny_config, max_steps=1)
    runs = [_run(config)[1] for _ in range(2)]
    first, second = ({k: v for k, v in r.of_kind("metrics")[0]["values"].items()
                      if not k.startswith(("time/", "perf/"))} for r in runs)
    assert first == second
    assert [i["completion"] for i in runs[0].of_kind("rollouts")[0]["items"]] == \
        [i["completion"] for i in runs[1].of_kind("rollouts")[0]["items"]]


def test_kl_is_reported_when_beta_is_positive(tiny_config):
    _, reporter = _run(dataclasses.replace(tiny_config, beta=0.1, max_steps=1))
    assert reporter.of_kind("metrics")[0]["values"]["kl/mean"] >= 0


def test_rewards_that_differ_within_groups_move_the_weights(tiny_config, length_rewarded):
    _, reporter = _run(dataclasses.replace(tiny_config, max_steps=1))
    values = reporter.of_kind("metrics")[0]["values"]
    assert values["groups/degenerate_fraction"] < 1
    assert values["advantage/std"] > 0
    assert values["optim/grad_norm"] > 0


@pytest.fixture(scope="module")
def ending_model(tiny_model, tmp_path_factory):
    """The tiny model with a random EOS embedding: it ends completions at varied lengths.

    (In the tiny model EOS is also the pad token, whose embedding starts at zero, so it never
    ends a completion.)
    """
    model, tokenizer = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.eos_token_id] = torch.randn(
            model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    path = tmp_path_factory.mktemp("ending-model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_micro_batching_does_not_change_the_update(tiny_config, ending_model, length_rewarded,
                                                   loss_type):
    config = dataclasses.replace(tiny_config, model=str(ending_model), max_steps=1,
                                 group_size=4, max_new_tokens=12, rollouts_logged_per_step=8,
                                 loss_type=loss_type)
    whole, split = (_run(dataclasses.replace(config, micro_batch_size=size))[1]
                    for size in (8, 3))
    lengths = [item["completion_tokens"] for item in whole.of_kind("rollouts")[0]["items"]]
    assert len(set(lengths)) > 2  # so the micro-batches are trimmed to different widths
    whole, split = (r.of_kind("metrics")[0]["values"] for r in (whole, split))
    assert 0 < whole["completion/truncated_fraction"] < 1
    for key in ("loss/policy", "entropy/mean", "optim/grad_norm"):
        assert split[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-6)


def test_recomputed_logprobs_match_the_sampling_distribution(tiny_model):
    model, tokenizer = load_policy(str(tiny_model), dtype=torch.float32, device="cpu")
    texts = tokenizer.apply_chat_template(
        [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a longer prompt"}]],
        add_generation_prompt=True, tokenize=False)
    prompts = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    out = model.generate(**prompts, do_sample=True, temperature=0.7, top_k=0, max_new_tokens=5,
                         num_return_sequences=2, output_scores=True, return_dict_in_generate=True,
                         pad_token_id=tokenizer.pad_token_id)
    width = len(out.scores)
    # After an EOS, generate pads and its scores no longer describe the tokens: compare before.
    is_eos = out.sequences[:, -width:] == tokenizer.eos_token_id
    before_eos = (is_eos.cumsum(1) - is_eos.long()) == 0  # (4, width)
    sampled = torch.stack(out.scores, 1).log_softmax(-1)  # scores hold logits / temperature
    expected = sampled.gather(-1, out.sequences[:, -width:, None]).squeeze(-1)
    attention = torch.cat([prompts["attention_mask"].repeat_interleave(2, 0),
                           torch.ones(4, width, dtype=torch.long)], dim=1)
    logp, _ = completion_logprobs(model, out.sequences, attention, width, temperature=0.7)
    assert torch.allclose(logp[before_eos], expected[before_eos], atol=1e-4)


def test_should_stop_ends_the_run_after_the_current_step(tiny_config):
    reporter = ListReporter()
    outcome = train(dataclasses.replace(tiny_config, max_steps=5), reporter,
                    should_stop=lambda: bool(reporter.of_kind("metrics")))
    assert outcome is Outcome.STOPPED
    assert len(reporter.of_kind("metrics")) == 1
    assert "stopped on request" in reporter.of_kind("log")[-1]["message"]


def test_a_missing_model_is_reported_as_an_error(tmp_path, tiny_config):
    outcome, reporter = _run(dataclasses.replace(tiny_config, model=str(tmp_path / "gone")))
    assert outcome is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert "gone" in error["message"] and "does not exist" in error["message"]
    assert not reporter.of_kind("metrics")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_an_error(tiny_config):
    outcome, reporter = _run(dataclasses.replace(tiny_config, device="cuda"))
    assert outcome is Outcome.FAILED
    assert "no CUDA GPU" in reporter.of_kind("error")[0]["message"]


@pytest.mark.parametrize("native", [False, True])
def test_bf16_where_it_is_emulated_warns_and_still_trains(tiny_config, monkeypatch, native):
    # The hardware probe is what stands in: an AVX2 CPU (emulated bf16) or one with AVX-512 BF16.
    monkeypatch.setattr("training.loops.setup.native_bf16", lambda device: native)
    outcome, reporter = _run(dataclasses.replace(tiny_config, max_steps=1, dtype="bfloat16"))
    assert outcome is Outcome.COMPLETED
    warnings = [e["message"] for e in reporter.of_kind("log") if e["level"] == "warning"
                and "bfloat16" in e["message"]]
    assert len(warnings) == (0 if native else 1)
    assert all("choose float32" in message for message in warnings)


def test_truncated_completions_can_be_left_out_of_the_loss(tiny_config, length_rewarded):
    # The tiny model never ends a completion, so with masking on nothing is left to learn from.
    _, reporter = _run(dataclasses.replace(tiny_config, max_steps=1, mask_truncated=True))
    values = reporter.of_kind("metrics")[0]["values"]
    assert values["completion/truncated_fraction"] == 1
    assert values["advantage/std"] > 0
    assert values["optim/grad_norm"] == 0


def test_loss_variants_run_together(tiny_config, length_rewarded):
    config = tiny_config.with_changes(
        max_steps=1, loss_type="dr_grpo", scale_rewards="none",
        importance_level="sequence", epsilon=3e-4, epsilon_high=4e-4, beta=0.05,
        kl_estimator="k2")
    outcome, reporter = _run(config)
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert values["kl/mean"] == pytest.approx(0.0, abs=1e-9)  # π = π_ref before the update
    assert values["optim/grad_norm"] > 0


@pytest.mark.parametrize("algorithm", ["rloo", "reinforce_pp"])
def test_each_algorithm_trains_a_step(tiny_config, length_rewarded, algorithm):
    outcome, reporter = _run(dataclasses.replace(tiny_config, max_steps=1, algorithm=algorithm))
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert values["advantage/std"] > 0 and values["optim/grad_norm"] > 0


def test_reinforce_pp_puts_the_kl_in_each_tokens_return(tiny_config, length_rewarded):
    # Step 2's policy has moved from the reference, so the returns to go fall along each
    # completion by the KL still ahead of the token: advantages differ within a completion.
    config = dataclasses.replace(tiny_config, algorithm="reinforce_pp", beta=0.5,
                                 kl_placement="reward", learning_rate=1e-2,
                                 token_details_per_step=2, rollouts_logged_per_step=2)
    outcome, reporter = _run(config)
    assert outcome is Outcome.COMPLETED
    second = reporter.of_kind("metrics")[1]["values"]
    assert second["kl/sequence_mean"] > 1e-3
    tokens = reporter.of_kind("rollouts")[1]["items"][0]["tokens"]["advantage"]
    assert len(set(tokens)) > 1


def test_later_passes_measure_the_ratio_against_the_stored_log_probs(tiny_config,
                                                                       length_rewarded):
    # A large step and a tiny clip range: the first pass has ρ = 1 everywhere, so any clipping
    # comes from the second pass, whose ratio is taken against the log-probs stored before.
    config = dataclasses.replace(tiny_config, max_steps=1, learning_rate=1e-2, epsilon=1e-3)
    single = _run(config)[1].of_kind("metrics")[0]["values"]
    double = _run(dataclasses.replace(config, num_iterations=2))[1].of_kind("metrics")[0][
        "values"]
    assert single["clip/low_fraction"] + single["clip/high_fraction"] == 0
    assert double["clip/low_fraction"] + double["clip/high_fraction"] > 0


def test_passes_with_a_reference_use_its_stored_log_probs(tiny_config, length_rewarded):
    config = dataclasses.replace(tiny_config, max_steps=1, learning_rate=1e-2, beta=0.1,
                                 num_iterations=2)
    outcome, reporter = _run(config)
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert values["kl/mean"] > 0  # the second pass sees the policy moved away from π_ref


def test_entropy_bonus_and_top_entropy_tokens_train_a_step(tiny_config, length_rewarded):
    config = dataclasses.replace(tiny_config, max_steps=1, entropy_coef=0.01,
                                 top_entropy_quantile=0.2)
    outcome, reporter = _run(config)
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert values["optim/grad_norm"] > 0 and math.isfinite(values["loss/policy"])


def test_extra_rewards_are_weighted_into_the_reward(tiny_config):
    config = dataclasses.replace(tiny_config, max_steps=1,
                                 extra_rewards="length_penalty=0.5, think_format=2")
    _, reporter = _run(config)
    values = reporter.of_kind("metrics")[0]["values"]
    # The tiny model never answers right nor uses tags; every completion hits the limit.
    assert values["reward/correct"] == 0 and values["reward/think_format"] == 0
    assert values["reward/length_penalty"] == pytest.approx(-1.0)
    assert values["reward/mean"] == pytest.approx(0.5 * -1.0)
    item = reporter.of_kind("rollouts")[0]["items"][0]
    assert set(item["rewards"]) == {"correct", "length_penalty", "think_format"}


def test_learning_rate_warms_up_then_follows_its_schedule(tiny_config):
    config = dataclasses.replace(tiny_config, max_steps=3, learning_rate=1e-3, warmup_steps=2,
                                 lr_schedule="linear")
    _, reporter = _run(config)
    lrs = [event["values"]["optim/lr"] for event in reporter.of_kind("metrics")]
    assert lrs == pytest.approx([0.0, 5e-4, 1e-3])
    constant = _run(dataclasses.replace(config, warmup_steps=0, lr_schedule="constant"))[1]
    assert [e["values"]["optim/lr"] for e in constant.of_kind("metrics")] == [1e-3] * 3


def test_some_rollouts_carry_per_token_arrays(tiny_config):
    config = dataclasses.replace(tiny_config, max_steps=1, token_details_per_step=2, beta=0.1)
    _, reporter = _run(config)
    items = reporter.of_kind("rollouts")[0]["items"]
    detailed = [item for item in items if item["tokens"]]
    assert len(detailed) == 2 and all(item["tokens"] is None for item in items[2:])
    tokens = detailed[0]["tokens"]
    n = detailed[0]["completion_tokens"]
    assert len(tokens["text"]) == len(tokens["logprob"]) == len(tokens["entropy"]) == n
    assert len(tokens["kl"]) == n and all(v == pytest.approx(0, abs=1e-4) for v in tokens["kl"])
    assert "".join(tokens["text"]) == detailed[0]["completion"]
    assert all(lp <= 0 for lp in tokens["logprob"])
    assert tokens["advantage"] == [round(detailed[0]["advantage"], 4)] * n


def test_ppo_token_arrays_carry_each_tokens_own_advantage(tiny_config, length_rewarded):
    config = dataclasses.replace(tiny_config, algorithm="ppo", max_steps=1,
                                 token_details_per_step=4, max_new_tokens=6)
    _, reporter = _run(config)
    detailed = [item for item in reporter.of_kind("rollouts")[0]["items"] if item["tokens"]]
    per_token = [item["tokens"]["advantage"] for item in detailed]
    assert all(len(a) == item["completion_tokens"] for a, item in zip(per_token, detailed))
    # GAE gives each token its own advantage; the completion's shown one is their mean
    assert any(len(set(a)) > 1 for a in per_token)
    for a, item in zip(per_token, detailed):
        assert item["advantage"] == pytest.approx(sum(a) / len(a), abs=1e-3)


def test_bf16_autocast_trains_with_fp32_weights(tiny_config, length_rewarded):
    outcome, reporter = _run(dataclasses.replace(tiny_config, max_steps=1, dtype="bfloat16"))
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert values["optim/grad_norm"] > 0 and math.isfinite(values["loss/policy"])


def test_the_kl_bias_correction_trains_over_several_passes(tiny_config, length_rewarded):
    config = dataclasses.replace(tiny_config, max_steps=1, beta=0.1, kl_estimator="k1",
                                 kl_bias_correction=True, num_iterations=2)
    outcome, reporter = _run(config)
    values = reporter.of_kind("metrics")[0]["values"]
    assert outcome is Outcome.COMPLETED
    assert math.isfinite(values["kl/mean"]) and values["optim/grad_norm"] > 0
