import doctest

import pytest

import training.rewards
from training.rewards import correct_answer, last_number


def test_doctests_pass():
    results = doctest.testmod(training.rewards)
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
