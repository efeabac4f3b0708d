"""training.policies.reward_models: combining scores, scoring with tiny random reward models,
errors."""

import doctest

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig

import training.policies.reward_models
from training.spec.config import REWARD_ENSEMBLES
from training.policies.loading import ModelNotFound
from training.policies.reward_models import (
    NotARewardModel,
    RewardModelEnsemble,
    build_tiny_reward_model,
    combine,
    reward_functions,
)

PROMPTS = ["Compute 3 + 4.", "Compute 3 + 4.", "Compute 12 + 9.", "Say hi."]
COMPLETIONS = ["7", "3 + 4 = 7, so the answer is 7. Let me double-check: 3, then 4 more, is 7.",
               "It is 21.", "Hello there! How can I help you with your sums today?"]

# Four models (rows) scoring three completions (columns): ties in the first two columns.
SCORES = torch.tensor([[0.0, 3.0, 4.0],
                       [0.0, 3.0, -2.0],
                       [2.0, 3.0, 4.0],
                       [2.0, 3.0, -2.0]])


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm-0"), seed=0)


@pytest.fixture(scope="module")
def other_reward_model(tmp_path_factory):
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm-1"), seed=1)


@pytest.fixture(scope="module")
def single(reward_model):
    """One tiny reward model, for tests that do not change it."""
    return RewardModelEnsemble([str(reward_model)], device="cpu", batch_size=8)


def test_doctests_pass():
    results = doctest.testmod(training.policies.reward_models)
    assert results.attempted > 0 and results.failed == 0


def test_mean_of_the_models():
    assert combine(SCORES, "mean").tolist() == [1.0, 3.0, 1.0]


def test_min_is_the_worst_model_even_when_several_tie():
    assert combine(SCORES, "min").tolist() == [0.0, 3.0, -2.0]


def test_uncertainty_subtracts_lambda_times_the_population_std():
    # population stds: [1, 0, 3]
    assert combine(SCORES, "uncertainty", lam=2.0).tolist() == [-1.0, 3.0, -5.0]
    assert combine(SCORES, "uncertainty", lam=0.0).tolist() == [1.0, 3.0, 1.0]


def test_uwo_subtracts_lambda_times_the_variance_as_coste_et_al():
    # population variances: [1, 0, 9]
    assert combine(SCORES, "uwo", lam=2.0).tolist() == [-1.0, 3.0, -17.0]


@pytest.mark.parametrize("how", sorted(REWARD_ENSEMBLES))
def test_one_model_is_its_own_score_in_every_mode(how):
    scores = torch.tensor([[0.5, -1.25, 3.0]])
    assert combine(scores, how, lam=10.0).tolist() == [0.5, -1.25, 3.0]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mean, min, uwo, uncertainty"):
        combine(SCORES, "median")


def test_every_mode_the_config_offers_exists():
    assert set(REWARD_ENSEMBLES) == set(training.policies.reward_models._COMBINERS)


def test_score_is_the_model_output_on_the_chat_at_its_last_token(reward_model, single):
    combined, per_model = single.score(PROMPTS, COMPLETIONS)

    model = AutoModelForSequenceClassification.from_pretrained(reward_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_model)
    expected = []
    for prompt, completion in zip(PROMPTS, COMPLETIONS):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": completion}],
                                             tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model.model(input_ids=ids).last_hidden_state  # (1, L, H)
            expected.append(model.score(hidden[0, -1]).item())
    assert per_model.shape == (1, 4)
    assert per_model[0].tolist() == pytest.approx(expected, abs=1e-5)
    assert combined.tolist() == pytest.approx(expected, abs=1e-5)
    assert len(set(per_model[0].tolist())) == 4


def test_without_a_chat_template_the_model_reads_prompt_blank_line_completion(reward_model):
    ensemble = RewardModelEnsemble([str(reward_model)], device="cpu")
    ensemble.tokenizers[0].chat_template = None
    _, per_model = ensemble.score(PROMPTS[:2], COMPLETIONS[:2])

    model = AutoModelForSequenceClassification.from_pretrained(reward_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_model)
    ids = tokenizer([f"{PROMPTS[0]}\n\n{COMPLETIONS[0]}"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=ids).logits[0, 0].item()
    assert per_model[0, 0].item() == pytest.approx(expected, abs=1e-5)


def test_padding_and_batch_company_do_not_change_a_score(single):
    alone = [single.score([p], [c])[0].item() for p, c in zip(PROMPTS, COMPLETIONS)]
    # One batch of 8: the short completions are padded up to the longest.
    together, _ = single.score(PROMPTS, COMPLETIONS)
    assert together.tolist() == pytest.approx(alone, abs=1e-5)
    again, _ = single.score(PROMPTS, COMPLETIONS)
    assert again.tolist() == together.tolist()


def test_batches_smaller_than_the_input_give_the_same_scores(reward_model, single):
    small = RewardModelEnsemble([str(reward_model)], device="cpu", batch_size=3)
    assert small.score(PROMPTS, COMPLETIONS)[0].tolist() == \
        pytest.approx(single.score(PROMPTS, COMPLETIONS)[0].tolist(), abs=1e-5)


def test_too_long_a_pair_keeps_its_end(reward_model):
    ensemble = RewardModelEnsemble([str(reward_model)], device="cpu")
    prompts = ["Tell me a story about " + "a cat, " * 20, "Count: " + "1 2 3 " * 20]
    completions = [COMPLETIONS[1]] * 2
    untruncated, _ = ensemble.score(prompts, completions)
    assert untruncated[0].item() != pytest.approx(untruncated[1].item(), abs=1e-4)

    ensemble.tokenizers[0].model_max_length = 16  # fewer tokens than the completion has
    truncated, _ = ensemble.score(prompts, completions)
    assert truncated[0].item() == pytest.approx(truncated[1].item(), abs=1e-5)


def test_each_model_of_an_ensemble_scores_as_it_does_alone(reward_model, other_reward_model,
                                                           single):
    pair = RewardModelEnsemble([str(reward_model), str(other_reward_model)], device="cpu")
    _, per_model = pair.score(PROMPTS, COMPLETIONS)
    other, _ = RewardModelEnsemble([str(other_reward_model)], device="cpu").score(PROMPTS,
                                                                                 COMPLETIONS)
    assert per_model.shape == (2, 4)
    assert per_model[0].tolist() == pytest.approx(single.score(PROMPTS, COMPLETIONS)[0].tolist(),
                                                  abs=1e-6)
    assert per_model[1].tolist() == pytest.approx(other.tolist(), abs=1e-6)
    assert not torch.allclose(per_model[0], per_model[1])  # the seeds made different models


@pytest.mark.parametrize("how", sorted(REWARD_ENSEMBLES))
def test_ensemble_combines_its_models_scores(reward_model, other_reward_model, how):
    ensemble = RewardModelEnsemble([str(reward_model), str(other_reward_model)], device="cpu",
                                   how=how, lam=0.7)
    combined, per_model = ensemble.score(PROMPTS, COMPLETIONS)
    assert combined.tolist() == pytest.approx(combine(per_model, how, 0.7).tolist(), abs=1e-6)
    assert not torch.allclose(combined, per_model[0])


def test_reward_functions_record_each_model_and_score_once_per_batch(reward_model,
                                                                     other_reward_model):
    ensemble = RewardModelEnsemble([str(reward_model), str(other_reward_model)], device="cpu",
                                   how="min")
    forward_calls = []
    for model in ensemble.models:
        model.register_forward_hook(lambda module, args, output: forward_calls.append(1))
    functions = reward_functions(ensemble)
    assert list(functions) == ["reward_model", "reward_model/0", "reward_model/1"]

    prompts, completions = list(PROMPTS), list(COMPLETIONS)
    values = {name: fn(prompts, completions, answer=["7"] * 4) for name, fn in functions.items()}
    assert len(forward_calls) == 2  # one batch through each model, for all three functions

    combined, per_model = ensemble.score(PROMPTS, COMPLETIONS)
    assert values["reward_model"] == pytest.approx(combined.tolist(), abs=1e-6)
    assert values["reward_model/0"] == pytest.approx(per_model[0].tolist(), abs=1e-6)
    assert values["reward_model/1"] == pytest.approx(per_model[1].tolist(), abs=1e-6)
    assert values["reward_model"] == pytest.approx(
        [min(a, b) for a, b in zip(values["reward_model/0"], values["reward_model/1"])])

    forward_calls.clear()
    swapped = functions["reward_model/1"](prompts[::-1], completions[::-1])
    assert len(forward_calls) == 2  # another batch: scored afresh
    assert swapped == pytest.approx(per_model[1].tolist()[::-1], abs=1e-5)


def test_missing_folder_names_the_reference(tmp_path):
    ref = str(tmp_path / "my-rm")
    with pytest.raises(ModelNotFound, match="my-rm.*does not exist"):
        RewardModelEnsemble([ref], device="cpu")


def test_causal_language_model_is_not_a_reward_model(tiny_model):
    with pytest.raises(NotARewardModel) as info:
        RewardModelEnsemble([str(tiny_model)], device="cpu")
    message = str(info.value)
    assert str(tiny_model) in message and "LlamaForCausalLM" in message
    assert "sequence-classification model with one score" in message


def test_classifier_with_two_labels_is_not_a_reward_model(tmp_path):
    LlamaConfig(num_labels=2, architectures=["LlamaForSequenceClassification"]) \
        .save_pretrained(tmp_path)
    with pytest.raises(NotARewardModel, match="2 label"):
        RewardModelEnsemble([str(tmp_path)], device="cpu")


def test_builtin_policy_is_not_a_reward_model():
    with pytest.raises(NotARewardModel, match="built-in policy"):
        RewardModelEnsemble(["builtin:smollm2-135m-instruct"], device="cpu")
