import doctest

import pytest

import training.spec.rewards
from training.spec.rewards import correct_answer, last_number


def test_doctests_pass():
    results = doctest.testmod(training.spec.rewards)
    assert results.attempted > 0 and results.failed == 0


@pytest.mark.parametrize("text, number", [
    ("7", 7.0),
    ("3 + 4 = 7", 7.0),
    ("The answer is 1,234,567.", 1234567.0),
    ("-12 is the answer", -12.0),
    ("10-3=7", 7.0),
    ("12.50 dollars", 12.5),
    ("**Answer:** 15", 15.0),
    ("", None),
])
def test_last_number(text, number):
    assert last_number(text) == number


def test_correct_answer_reads_the_last_number_only():
    assert correct_answer(["q"] * 2, ["7 + 5 = 12, not 13", "12 or 13"],
                          answer=["12", "12"]) == [0.0, 0.0]


def test_correct_answer_ignores_other_columns():
    assert correct_answer(["q"], ["8"], answer=["8"], difficulty=["easy"]) == [1.0]


def test_every_extra_reward_the_config_offers_exists():
    from training.spec.config import EXTRA_REWARDS
    from training.spec.rewards import EXTRA_REWARD_FUNCTIONS

    assert set(EXTRA_REWARDS) == set(EXTRA_REWARD_FUNCTIONS)


def test_countdown_refuses_anything_but_arithmetic_on_the_given_numbers():
    from training.spec.rewards import countdown

    completions = ["<answer>2 ** 5</answer>", "<answer>(2+5)*6-22</answer>", "<answer></answer>",
                   "<answer>5 * (6 - 2) / 1</answer>", "<answer>6 / (5 - 5)</answer>"]
    assert countdown([""] * 5, completions, numbers=[[2, 5, 6]] * 5,
                     target=[20] * 5) == [0.0] * 5
