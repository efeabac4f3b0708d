import random

from training.config import TASKS as CONFIG_TASKS
from training.tasks import TASKS, get_task


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
    ids = [e.prompt_id for e in get_task("arithmetic").sample(random.Random(0), 100)]
    assert len(set(ids)) == 100


def test_two_digit_operands():
    for example in get_task("arithmetic-2digit").sample(random.Random(0), 50):
        a, b = (int(x) for x in example.prompt_id.split("+"))
        assert 10 <= a <= 99 and 10 <= b <= 99
