import dataclasses
import doctest
import json
import random

import pytest

import training.spec.prompt_dataset
from training.spec.events import ListReporter
from training.spec.prompt_dataset import DatasetFileError, load_prompt_dataset
from training.loops.train import Outcome, train

ROWS = [{"prompt": "Compute 2 + 3.", "answer": "5"}, {"prompt": "Compute 7 + 1.", "answer": 8},
        {"prompt": "Compute 4 + 4.", "answer": "8"}]


def _write(tmp_path, lines: list[str]):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def dataset_file(tmp_path):
    return _write(tmp_path, [json.dumps(row) for row in ROWS])


def test_doctests_pass():
    assert doctest.testmod(training.spec.prompt_dataset).failed == 0


def test_rows_become_examples_named_by_line(dataset_file):
    dataset = load_prompt_dataset(dataset_file)
    assert [(e.prompt_id, e.prompt, e.columns) for e in dataset.examples] == [
        ("#1", "Compute 2 + 3.", {"answer": "5"}), ("#2", "Compute 7 + 1.", {"answer": "8"}),
        ("#3", "Compute 4 + 4.", {"answer": "8"})]
    assert list(dataset.reward_functions) == ["correct"]


def test_samples_are_distinct_while_there_are_enough(dataset_file):
    dataset = load_prompt_dataset(dataset_file)
    assert len({e.prompt_id for e in dataset.sample(random.Random(0), 3)}) == 3
    assert len(dataset.sample(random.Random(0), 7)) == 7


def test_rows_without_an_answer_are_errors_with_their_line(tmp_path):
    path = _write(tmp_path, ['{"prompt": "a", "answer": 1}', "", '{"prompt": "b"}',
                             '{"prompt": "c", "answer": "many"}', "not json", '{"answer": 2}'])
    with pytest.raises(DatasetFileError) as info:
        load_prompt_dataset(path)
    assert str(info.value) == (
        f"The dataset file {str(path)!r} has errors: line 3: no answer; line 4: the answer "
        f"'many' is not a number; correct_answer compares numbers; line 5: not a JSON object; "
        f"line 6: no prompt")


def test_a_difficulty_on_any_line_gives_every_example_one(tmp_path):
    path = _write(tmp_path, ['{"prompt": "a", "answer": 1, "difficulty": 2}',
                             '{"prompt": "b", "answer": 2, "difficulty": null}',
                             '{"prompt": "c", "answer": 3}',
                             '{"prompt": "d", "answer": 4, "difficulty": " 0.5"}'])
    assert [e.columns["difficulty"] for e in load_prompt_dataset(path).examples] == [
        2.0, None, None, 0.5]


def test_without_a_difficulty_the_columns_are_the_answer_only(dataset_file):
    assert all(e.columns.keys() == {"answer"} for e in load_prompt_dataset(dataset_file).examples)


def test_a_difficulty_that_is_no_number_is_an_error_with_its_line(tmp_path):
    path = _write(tmp_path, ['{"prompt": "a", "answer": 1, "difficulty": "hard"}'])
    with pytest.raises(DatasetFileError, match="line 1: the difficulty 'hard' is not a number"):
        load_prompt_dataset(path)


def test_a_missing_file_says_where_to_look(tmp_path):
    with pytest.raises(DatasetFileError, match="does not exist on this worker"):
        load_prompt_dataset(tmp_path / "gone.jsonl")


def test_an_empty_file_has_no_examples(tmp_path):
    with pytest.raises(DatasetFileError, match="has no examples"):
        load_prompt_dataset(_write(tmp_path, [""]))


def test_one_step_trains_on_the_dataset(tiny_config, dataset_file):
    config = dataclasses.replace(tiny_config, dataset=str(dataset_file), max_steps=1)
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED
    [metrics] = reporter.of_kind("metrics")
    assert "reward/correct" in metrics["values"]
    items = reporter.of_kind("rollouts")[0]["items"]
    by_prompt = {row["prompt"]: str(row["answer"]) for row in ROWS}
    for item in items:
        assert item["extra"]["answer"] == by_prompt[item["prompt"]]
        assert item["prompt_id"] in {"#1", "#2", "#3"}


def test_a_dataset_with_difficulties_trains_and_logs_them(tiny_config, tmp_path):
    path = _write(tmp_path, ['{"prompt": "Compute 2 + 3.", "answer": 5, "difficulty": 1}',
                             '{"prompt": "Compute 7 + 1.", "answer": 8}'])
    config = dataclasses.replace(tiny_config, dataset=str(path), max_steps=1)
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.COMPLETED
    items = reporter.of_kind("rollouts")[0]["items"]
    assert {item["prompt_id"]: item["extra"]["difficulty"] for item in items} == {
        "#1": 1.0, "#2": None}


def test_a_bad_dataset_fails_the_run_before_loading_the_model(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, dataset=str(_write(tmp_path, ['{"prompt": "x"}'])))
    reporter = ListReporter()
    assert train(config, reporter) is Outcome.FAILED
    [error] = reporter.of_kind("error")
    assert "line 1: no answer" in error["message"]
    assert not reporter.of_kind("status")
