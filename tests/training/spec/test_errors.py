"""What rlab's messages quote of an exception: its first line, or its type when it says nothing
(an empty message once made the reward model's loader fail with IndexError instead)."""

from training.spec.errors import described, first_line


def test_the_first_line_of_a_long_message_is_quoted_within_the_limit():
    error = OSError("\n  first line is here  \nsecond line\n")
    assert first_line(error) == "first line is here"
    assert first_line(error, limit=5) == "first"
    assert described(error) == "OSError: first line is here"


def test_an_empty_message_is_told_by_its_type():
    assert first_line(ValueError("   \n")) == "ValueError"
    assert described(KeyboardInterrupt()) == "KeyboardInterrupt"
