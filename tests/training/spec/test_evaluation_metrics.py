"""pass@k, maj@k and avg@n against values computed by hand."""

import doctest
import math

import pytest

import training.spec.evaluation_metrics
from training.spec.evaluation_metrics import PromptSamples, majority_at_k, pass_at_k, summarize


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (4, 1, 2, 1 - 3 / 6),  # 1 − C(3,2)/C(4,2)
    (5, 2, 2, 1 - 3 / 10),  # 1 − C(3,2)/C(5,2)
    (10, 3, 1, 0.3),  # pass@1 = c/n
    (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
    (8, 8, 8, 1.0),  # all correct
    (8, 0, 8, 0.0),  # none correct
    (3, 1, 3, 1.0),  # n = k: any correct sample is drawn
    (3, 0, 3, 0.0),
    (6, 5, 2, 1.0),  # fewer wrong samples than k: always a correct one
])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_the_binomials_for_large_n():
    n, c, k = 200, 17, 50
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


@pytest.mark.parametrize(("n", "c", "k"), [(4, 1, 5), (4, 1, 0), (4, 5, 2), (4, -1, 2)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_majority_voting_counts_answers_not_samples():
    answers = ["7", "8", "7", "9", "8", "7"]
    correct = [a == "7" for a in answers]
    assert majority_at_k(answers, correct, k=6) == 1.0  # 7 wins 3 to 2 to 1
    assert majority_at_k(["8", "8", "7"], [False, False, True], k=3) == 0.0


def test_majority_ties_count_the_expected_correctness():
    assert majority_at_k(["7", "8", "7", "8"], [True, False, True, False], k=4) == 0.5
    assert majority_at_k(["1", "2", "3"], [False, True, False], k=3) == pytest.approx(1 / 3)
    assert majority_at_k(["1", "2"], [False, False], k=2) == 0.0


def test_majority_uses_the_first_k_samples_and_skips_missing_answers():
    answers = [None, "7", None, "8", "8"]
    correct = [False, True, False, False, False]
    assert majority_at_k(answers, correct, k=3) == 1.0  # only "7" voted among the first 3
    assert majority_at_k(answers, correct, k=5) == 0.0  # "8" has two votes
    assert majority_at_k([None, None], [False, False], k=2) == 0.0  # nobody answered


def test_majority_of_one_is_the_sample_itself():
    assert majority_at_k(["7", "8"], [True, False], k=1) == 1.0


def test_summary_averages_each_metric_over_prompts():
    prompts = [
        PromptSamples("a", ("7", "7", "8", "7"), (True, True, False, True),
                      (1.0, 1.0, 0.0, 1.0), (10, 12, 30, 8)),
        PromptSamples("b", ("3", "4", "4", None), (True, False, False, False),
                      (1.0, 0.0, 0.0, 0.0), (5, 5, 5, 32)),
    ]
    metrics = summarize(prompts, pass_ks=(1, 2, 4), maj_ks=(4,))
    assert metrics["pass@1"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert metrics["pass@2"] == pytest.approx((1.0 + (1 - 3 / 6)) / 2)
    assert metrics["pass@4"] == 1.0
    assert metrics["maj@4"] == pytest.approx((1.0 + 0.0) / 2)  # a: 7; b: 4 (wrong)
    assert metrics["avg@4"] == pytest.approx(0.5)
    assert metrics["reward/mean"] == pytest.approx(4 / 8)
    assert metrics["length/mean"] == pytest.approx(107 / 8)


def test_summary_needs_the_same_number_of_samples_for_every_prompt():
    prompts = [PromptSamples("a", ("1",), (True,), (1.0,), (3,)),
               PromptSamples("b", ("1", "2"), (True, False), (1.0, 0.0), (3, 3))]
    with pytest.raises(ValueError, match="same number"):
        summarize(prompts)
    with pytest.raises(ValueError, match="no prompts"):
        summarize([])


def test_doctests_pass():
    results = doctest.testmod(training.spec.evaluation_metrics)
    assert results.attempted and not results.failed
