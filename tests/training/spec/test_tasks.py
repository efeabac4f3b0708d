import random

import pytest

from training.spec.config import TASKS as CONFIG_TASKS
from training.spec.tasks import TASKS, get_task, is_held_out


def test_every_task_in_the_config_exists():
    assert set(TASKS) == set(CONFIG_TASKS)


def test_arithmetic_prompt_wording_id_and_answer():
    [example] = get_task("arithmetic").sample(random.Random(0), 1)
    a, b = (int(x) for x in example.prompt_id.split("+"))
    assert 0 <= a <= 9 and 0 <= b <= 9
    assert example.prompt == f"Compute {a} + {b}. Give the final answer as a number at the end."
    assert example.columns == {"answer": str(a + b)}


def test_the_same_seed_gives_the_same_prompts():
    task = get_task("arithmetic")
    first = [e.prompt_id for e in task.sample(random.Random(3), 8)]
    assert first == [e.prompt_id for e in task.sample(random.Random(3), 8)]
    assert first != [e.prompt_id for e in task.sample(random.Random(4), 8)]


def test_prompts_within_a_step_are_distinct():
    task = get_task("arithmetic")
    ids = [e.prompt_id for e in task.sample(random.Random(0), len(task.examples))]
    assert len(set(ids)) == len(task.examples)


@pytest.mark.parametrize("name", list(TASKS))
def test_the_held_out_split_is_disjoint_from_training_and_about_a_tenth(name):
    train = {e.prompt_id for e in get_task(name).examples}
    held_out = {e.prompt_id for e in get_task(name, "held_out").examples}
    every = {e.prompt_id for e in get_task(name, "all").examples}
    assert train.isdisjoint(held_out) and train | held_out == every
    assert 0.05 < len(held_out) / len(every) < 0.15
    # training never samples a held-out question, however many it draws
    drawn = get_task(name).sample(random.Random(1), 5000)
    assert not {e.prompt_id for e in drawn} & held_out


def test_the_split_of_a_prompt_depends_on_its_id_alone():
    assert [e.prompt_id for e in get_task("arithmetic", "held_out").examples] == [
        "0+0", "0+1", "0+9", "3+5", "4+5", "5+6", "6+3", "8+9"]
    assert all(is_held_out(e.prompt_id) for e in get_task("arithmetic", "held_out").examples)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        get_task("arithmetic", "test").examples


def test_two_digit_operands():
    for example in get_task("arithmetic-2digit").sample(random.Random(0), 50):
        a, b = (int(x) for x in example.prompt_id.split("+"))
        assert 10 <= a <= 99 and 10 <= b <= 99
