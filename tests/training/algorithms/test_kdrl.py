"""KDRL: β_KD's schedule, the per-token KL to the teacher and its masking by reward against
hand-computed values, the direction of its gradient, the refusal of a teacher with another
vocabulary, its config checks, and runs on the tiny model (both rollout backends, resumed)."""

import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tests.training.conftest import run_and_resume
import training.spec.tasks
from training.algorithms.aggregation import BatchShape
from training.algorithms.kdrl import (
    kd_coefficient,
    kd_loss,
    kd_response_weights,
    load_teacher,
    vocabulary_mismatch,
)
from training.loops.train import Outcome, train
from training.policies.loading import build_tiny_model
from training.policies.references import ReferenceMismatch
from training.spec.config import ConfigError, RunConfig
from training.spec.events import ListReporter
from training.spec.tasks import AdditionTask

LN2 = math.log(2)
UNTIMED = ("time/", "perf/")


def _odd_length(prompts, completions, **columns):
    """A coin flip for the random tiny model: groups get different rewards, so GRPO moves it."""
    return [float(len(c) % 2) for c in completions]


@pytest.fixture
def coin_flip_task(monkeypatch):
    monkeypatch.setitem(training.spec.tasks.TASKS, "arithmetic",
                        AdditionTask(low=0, high=9, reward_functions={"correct": _odd_length}))


# ---------------------------------------------------------------------------------------------
# β_KD's schedule


def test_linear_beta_is_the_papers_decay_of_5e_5_a_step_then_stays_at_its_end():
    # β = max(5e-3 − 5e-5·(s − 1), 1e-3)
    assert kd_coefficient(1, "linear", 5e-3, 1e-3, 80) == pytest.approx(5e-3)
    assert kd_coefficient(21, "linear", 5e-3, 1e-3, 80) == pytest.approx(4e-3)
    assert kd_coefficient(61, "linear", 5e-3, 1e-3, 80) == pytest.approx(2e-3)
    assert kd_coefficient(81, "linear", 5e-3, 1e-3, 80) == pytest.approx(1e-3)
    assert kd_coefficient(300, "linear", 5e-3, 1e-3, 80) == pytest.approx(1e-3)


def test_cosine_beta_is_half_a_cosine_and_constant_beta_stays_at_its_start():
    # β = 0.1 + (0.9 − 0.1)·(1 + cos(π p))/2, p = (s − 1)/4
    assert kd_coefficient(1, "cosine", 0.9, 0.1, 4) == pytest.approx(0.9)
    assert kd_coefficient(2, "cosine", 0.9, 0.1, 4) == pytest.approx(0.1 + 0.8 * 0.853553, 1e-6)
    assert kd_coefficient(3, "cosine", 0.9, 0.1, 4) == pytest.approx(0.5)
    assert kd_coefficient(5, "cosine", 0.9, 0.1, 4) == pytest.approx(0.1)
    assert [kd_coefficient(s, "constant", 0.9, 0.1, 4) for s in (1, 3, 9)] == [0.9, 0.9, 0.9]


def test_a_schedule_of_no_steps_keeps_the_start_value():
    assert kd_coefficient(1, "linear", 0.3, 0.1, 0) == 0.3


# ---------------------------------------------------------------------------------------------
# The per-token KL term and its masking by reward


def test_reward_guided_kd_keeps_incorrect_responses_or_unsolved_prompts():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.0, -1.0])  # two groups of 3
    assert kd_response_weights(rewards, 3, "none", 0.0).tolist() == [1.0] * 6
    assert kd_response_weights(rewards, 3, "response", 0.0).tolist() == [0, 1, 0, 1, 1, 1]
    assert kd_response_weights(rewards, 3, "group", 0.0).tolist() == [0, 0, 0, 1, 1, 1]
    assert kd_response_weights(rewards, 3, "response", 0.5).tolist() == [0, 1, 1, 1, 1, 1]
    assert kd_response_weights(rewards, 3, "group", 1.0).tolist() == [1.0] * 6


# Two completions: the first's tokens have r = log π_θ − log π_T = ln 2 and 0, the second's
# ln 2 then padding.
LOGP = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.9]]))
TEACHER = torch.log(torch.tensor([[0.25, 0.25], [0.25, 0.1]]))
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])


def test_k2_and_k3_per_token_terms_by_hand():
    # k2 = ½ r²; k3 = e^(−r) + r − 1: ½ (ln 2)² = 0.240227, ½ + ln 2 − 1 = 0.193147
    both = torch.ones(2)
    grpo = dict(loss_type="grpo", shape=BatchShape(2, 3, 2, 1))
    assert kd_loss(LOGP, TEACHER, both, MASK, estimator="k2", **grpo).item() == \
        pytest.approx((0.240227 / 2 + 0.240227) / 2, 1e-5)
    assert kd_loss(LOGP, TEACHER, both, MASK, estimator="k3", **grpo).item() == \
        pytest.approx((0.193147 / 2 + 0.193147) / 2, 1e-5)


def test_a_masked_response_adds_nothing_but_still_counts_in_the_normaliser():
    first_only = torch.tensor([1.0, 0.0])
    grpo = kd_loss(LOGP, TEACHER, first_only, MASK, estimator="k2", loss_type="grpo",
                   shape=BatchShape(2, 3, 2, 1))
    dapo = kd_loss(LOGP, TEACHER, first_only, MASK, estimator="k2", loss_type="dapo",
                   shape=BatchShape(2, 3, 2, 1))
    assert grpo.item() == pytest.approx(0.240227 / 2 / 2, 1e-5)  # 1/N Σ_i 1/|o_i| Σ_t
    assert dapo.item() == pytest.approx(0.240227 / 3, 1e-5)  # Σ / every token of the step


def _expected_gradient(logits: torch.Tensor, teacher: torch.Tensor, estimator: str,
                       ) -> torch.Tensor:
    """E_(a ~ π_θ)[∇_z k(a)] exactly, through kd_loss: one completion per token a of the
    vocabulary, weighted by π_θ(a) (as m_a, times V for the token mean)."""
    z = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(z, dim=-1)[:, None]  # (V, 1): token a's completion
    weights = len(logits) * logp.detach().exp()[:, 0]  # (V,)
    loss = kd_loss(logp, teacher.log()[:, None], weights, torch.ones(len(logits), 1),
                   estimator=estimator, loss_type="dapo")
    (gradient,) = torch.autograd.grad(loss, z)
    return gradient


def _gradient(divergence, logits: torch.Tensor) -> torch.Tensor:
    z = logits.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(divergence(torch.softmax(z, dim=-1)), z)
    return gradient


def _reverse_kl(student, teacher):
    return (student * (student.log() - teacher.log())).sum()


LOGITS = torch.tensor([1.0, 0.0, -1.0])  # π_θ ≈ (0.665, 0.245, 0.090)
TEACHER_PROBS = torch.tensor([0.1, 0.3, 0.6])


def test_k2_in_the_loss_descends_the_reverse_kl_towards_the_teacher():
    gradient = _expected_gradient(LOGITS, TEACHER_PROBS, "k2")
    reverse = _gradient(lambda p: _reverse_kl(p, TEACHER_PROBS), LOGITS)
    assert torch.allclose(gradient, reverse, atol=1e-6)
    # the student's mass moves from the token the teacher dislikes to the one it likes
    assert gradient[0] > 0 > gradient[2]
    before = _reverse_kl(torch.softmax(LOGITS, -1), TEACHER_PROBS)
    after = _reverse_kl(torch.softmax(LOGITS - 0.5 * gradient, -1), TEACHER_PROBS)
    assert after < before


def test_k3_in_the_loss_descends_the_forward_kl_instead():
    gradient = _expected_gradient(LOGITS, TEACHER_PROBS, "k3")
    forward = _gradient(lambda p: _reverse_kl(TEACHER_PROBS, p), LOGITS)
    reverse = _gradient(lambda p: _reverse_kl(p, TEACHER_PROBS), LOGITS)
    assert torch.allclose(gradient, forward, atol=1e-6)
    assert not torch.allclose(gradient, reverse, atol=1e-2)


# ---------------------------------------------------------------------------------------------
# The teacher


def test_a_vocabulary_of_another_size_or_numbering_is_a_mismatch():
    policy = {"a": 0, "b": 1, "c": 2}
    assert vocabulary_mismatch(policy, dict(policy), 3) is None
    assert vocabulary_mismatch(policy, {**policy, "d": 3}, 4) == \
        "its tokenizer has 4 tokens, the policy's 3"
    assert vocabulary_mismatch(policy, {"a": 0, "b": 2, "c": 1}, 3) == \
        "its tokenizer numbers tokens differently ('b' is 2, the policy's is 1)"
    assert vocabulary_mismatch(policy, dict(policy), 2) == \
        "it scores 2 token ids, the policy's tokenizer has 3"


def _save_with_vocabulary(tiny_model, path, *, extra_token: bool, vocab_size: int = 0):
    """The tiny model's architecture with one more token in its tokenizer (and its embedding),
    or with `vocab_size` ids scored under the tiny model's own tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if extra_token:
        tokenizer.add_tokens(["<kd-extra>"])
    config = AutoConfig.from_pretrained(tiny_model)
    config.vocab_size = vocab_size or len(tokenizer)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("other, problem", [
    (dict(extra_token=True), "its tokenizer has 49153 tokens, the policy's 49152"),
    (dict(extra_token=False, vocab_size=1000),
     "it scores 1000 token ids, the policy's tokenizer has 49152"),
])
def test_a_teacher_with_another_vocabulary_is_refused_when_the_run_starts(
        tiny_config, tiny_model, tmp_path, other, problem):
    teacher = _save_with_vocabulary(tiny_model, tmp_path / "teacher", **other)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(ReferenceMismatch, match="does not share the policy's vocabulary"):
        load_teacher(str(teacher), tokenizer, device=torch.device("cpu"), dtype=torch.float32)
    config = tiny_config.with_changes(algorithm="kdrl", kd_teacher=str(teacher))
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert error["message"] == (
        f"The KDRL teacher {str(teacher)!r} does not share the policy's vocabulary: {problem}, "
        f"so its log-probs of the policy's tokens mean nothing. Pick a teacher with the "
        f"policy's tokenizer: a model of the same family, or a checkpoint of the policy.")
    assert not reporter.of_kind("metrics")


def test_the_teacher_is_frozen_in_eval_mode(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    teacher = load_teacher(str(tiny_model), tokenizer, device=torch.device("cpu"),
                           dtype=torch.float32)
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


# ---------------------------------------------------------------------------------------------
# Config checks


def test_kdrl_needs_a_teacher_a_beta_and_groups():
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({"algorithm": "kdrl"})
    assert bad.value.errors == {"kd_teacher": "KDRL distils from a teacher: name a model that "
                                              "shares the policy's tokenizer"}
    teacher = {"algorithm": "kdrl", "kd_teacher": "builtin:smollm2-135m-instruct"}
    for zero in ({"kd_coef_start": 0.0, "kd_schedule": "constant"},
                 {"kd_coef_start": 0.0, "kd_coef_end": 0.0}):
        with pytest.raises(ConfigError) as bad:
            RunConfig.from_dict({**teacher, **zero})
        assert "β_KD is 0 throughout" in bad.value.errors["kd_coef_start"]
    RunConfig.from_dict({**teacher, "kd_coef_start": 0.0})  # a warm-up from 0 is a schedule
    with pytest.raises(ConfigError) as bad:
        RunConfig.from_dict({**teacher, "group_size": 1})
    assert "at least 2" in bad.value.errors["group_size"]


def test_the_teacher_is_one_model_reference_and_no_path():
    base = {"algorithm": "kdrl"}
    for teacher, message in (("/models/teacher", "a path on the worker is not accepted"),
                             ("builtin:smollm2-135m-instruct, org/x", "give one model")):
        with pytest.raises(ConfigError) as bad:
            RunConfig.from_dict({**base, "kd_teacher": teacher})
        assert message in bad.value.errors["kd_teacher"]
    estimator = {f.name: f for f in RunConfig.fields_for("kdrl")}["kd_estimator"]
    assert list(estimator.metadata["choices"]) == ["k2", "k3"] and estimator.default == "k2"


def test_a_kdrl_config_names_its_teacher_among_its_model_fields():
    config = RunConfig.from_dict({"algorithm": "kdrl", "kd_teacher": "local:teacher"}).to_dict()
    named = [f.name for f in RunConfig.fields_of(config) if f.metadata["models"]]
    assert "kd_teacher" in named and "model" in named
    grpo = RunConfig().to_dict()
    assert "kd_teacher" not in [f.name for f in RunConfig.fields_of(grpo)]


# ---------------------------------------------------------------------------------------------
# Runs on the tiny model


def _two_steps(config: RunConfig) -> ListReporter:
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED, reporter.of_kind("error")
    return reporter


def _check_two_steps_with_itself_as_teacher(reporter: ListReporter) -> None:
    first, second = [event["values"] for event in reporter.of_kind("metrics")]
    # The teacher is the initial student: no KL before the first update, some after it.
    assert first["kd/kl"] == pytest.approx(0.0, abs=1e-9)
    assert first["kd/loss"] == pytest.approx(0.0, abs=1e-9)
    assert second["kd/kl"] > 1e-6 and second["kd/loss"] > 0
    # β_KD over the whole run: start at step 1, end at step 2
    assert (first["kd/coef"], second["kd/coef"]) == (pytest.approx(0.5), pytest.approx(0.1))
    assert first["optim/grad_norm"] > 0
    tokens = [item["tokens"] for event in reporter.of_kind("rollouts")
              for item in event["items"] if item["tokens"]]
    assert tokens and all(len(t["teacher_kl"]) == len(t["text"]) for t in tokens)
    first_step = [item["tokens"] for item in reporter.of_kind("rollouts")[0]["items"]
                  if item["tokens"]]
    assert first_step and all(v == 0 for t in first_step for v in t["teacher_kl"])


def _self_taught(config: RunConfig, teacher) -> RunConfig:
    return config.with_changes(algorithm="kdrl", kd_teacher=str(teacher), kd_anneal_steps=0,
                               kd_coef_start=0.5, kd_coef_end=0.1, learning_rate=1e-2,
                               token_details_per_step=2, rollouts_logged_per_step=2)


def test_two_steps_with_the_initial_policy_as_teacher(tiny_config, tiny_model, coin_flip_task):
    reporter = _two_steps(_self_taught(tiny_config, tiny_model))
    _check_two_steps_with_itself_as_teacher(reporter)
    assert any("KDRL teacher" in e["message"] for e in reporter.of_kind("log"))


def test_two_steps_on_vllm_rollouts(tiny_model, tmp_path, coin_flip_task):
    pytest.importorskip("vllm")
    from tests.training.rollouts.test_vllm_backend import save_tiny_policy

    policy = save_tiny_policy(tiny_model, tmp_path / "policy", heads=2)
    config = RunConfig.from_dict(dict(
        model=str(policy), rollout_backend="vllm", max_steps=2, prompts_per_step=2,
        group_size=3, max_new_tokens=6, micro_batch_size=4), paths=True)
    reporter = _two_steps(_self_taught(config, policy))
    assert any("rollouts by vllm" in e["message"] for e in reporter.of_kind("log"))
    _check_two_steps_with_itself_as_teacher(reporter)


def test_response_masking_reports_the_share_of_responses_taught(tiny_config, tiny_model,
                                                                 coin_flip_task):
    config = _self_taught(tiny_config, tiny_model).with_changes(kd_reward_guided="response",
                                                                rollouts_logged_per_step=6)
    reporter = _two_steps(config)
    logged = {e["step"]: e["items"] for e in reporter.of_kind("rollouts")}
    for event in reporter.of_kind("metrics"):
        rewards = [item["reward"] for item in logged[event["step"]]]  # all 6 of the step
        assert len(rewards) == 6
        incorrect = sum(r <= 0 for r in rewards) / 6
        assert event["values"]["kd/applied_fraction"] == pytest.approx(incorrect)
    unmasked = _two_steps(_self_taught(tiny_config, tiny_model))
    assert "kd/applied_fraction" not in unmasked.of_kind("metrics")[0]["values"]


def test_a_resumed_run_repeats_the_uninterrupted_steps(tiny_config, tiny_model, tmp_path,
                                                       coin_flip_task):
    teacher = build_tiny_model(tmp_path / "teacher", seed=1)
    config = tiny_config.with_changes(
        algorithm="kdrl", kd_teacher=str(teacher), kd_coef_start=0.5, kd_coef_end=0.1,
        kd_anneal_steps=3, kd_reward_guided="group", max_steps=4, checkpoint_every=2,
        learning_rate=1e-2, rollouts_logged_per_step=6)
    straight, resumed = run_and_resume(config, tmp_path, at=2)
    want = {e["step"]: e["values"] for e in straight.of_kind("metrics")}
    have = {e["step"]: e["values"] for e in resumed.of_kind("metrics")}
    assert sorted(have) == [3, 4]
    for step in (3, 4):
        untimed = {k: v for k, v in want[step].items() if not k.startswith(UNTIMED)}
        assert {k: v for k, v in have[step].items() if not k.startswith(UNTIMED)} == \
            pytest.approx(untimed, rel=1e-5, abs=1e-7)
    # the schedule went on from the checkpoint: 0.5 + (0.1 − 0.5)·2/3 at step 3
    assert have[3]["kd/coef"] == pytest.approx(0.5 - 0.4 * 2 / 3)
    assert have[4]["kd/coef"] == pytest.approx(0.1)
    assert have[3]["kd/kl"] > 0  # a teacher other than the student
