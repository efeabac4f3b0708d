"""Importing the rollouts TRL and veRL write to disk: the files read as the trainers write them
(TRL's GRPOTrainer.log with log_completions=True; veRL's RayPPOTrainer._dump_generations),
grouped by prompt, refused whole with the place of each problem, and stored through the
management command and the API on Postgres."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.webapp.datasets import hostile
from webapp.api.tokens import token_create
from webapp.common.problems import MAX_ERRORS
from webapp.rollouts.importers import (
    LIMITS,
    TRL,
    VERL,
    RolloutFileError,
    prompt_id,
    scan_files,
)
from webapp.runs import tracking
from webapp.runs.models import Rollout, Run, RunStatus

DATA = Path(__file__).parent / "data"
VERL_FILES = [DATA / "verl" / "1.jsonl", DATA / "verl" / "2.jsonl"]
SUM, PRODUCT = "What is 2 + 3?", "What is 4 * 5?"


def trl_parquet(**columns: list) -> bytes:
    """A completions file as GRPOTrainer writes it: step, prompt, completion, a float column per
    reward function, log_extra columns, advantage."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


def trl_step(step: int = 5, **changes: list) -> bytes:
    """Two prompts, two completions each (TRL samples a prompt's completions together)."""
    columns = {
        "step": [step] * 4,
        "prompt": [SUM, SUM, PRODUCT, PRODUCT],
        "completion": ["5", "6", "20", "20"],
        "correctness_reward": [1.0, 0.0, 1.0, 1.0],
        "format_reward": [0.5, 0.5, 0.5, 0.5],
        "answer": ["5", "5", "20", "20"],
        "advantage": [0.7, -0.7, 0.0, 0.0],
    }
    return trl_parquet(**{**columns, **changes})


def verl_lines(*entries: dict) -> bytes:
    return "\n".join(json.dumps(entry) for entry in entries).encode() + b"\n"


def files(paths: list[Path]) -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in paths]


def read_files(named: list[tuple[str, bytes]], *, format: str,
               reward_columns: list[str] | None = None,
               batch: int = 1000) -> dict[int, list[dict]]:
    """The rollout items of each step, as an import stores them: the files written to disk,
    scanned, then read again `batch` items at a time; a step's items in group and sample
    order."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for number, (name, data) in enumerate(named):
            path = Path(folder) / str(number)
            path.write_bytes(data)
            paths.append((name, path))
        scan = scan_files(paths, format=format, reward_columns=reward_columns)
        steps: dict[int, list[dict]] = {}
        for items in scan.batches(batch):
            assert sum(map(len, items.values())) <= batch
            for step, step_items in items.items():
                steps.setdefault(step, []).extend(step_items)
    assert sorted(steps) == scan.steps
    assert sum(map(len, steps.values())) == scan.rows
    return {step: sorted(steps[step], key=lambda item: (item["group"], item["sample_index"]))
            for step in sorted(steps)}


# Reading TRL


def test_a_trl_file_gives_a_group_per_prompt_with_the_summed_reward():
    steps = read_files([("completions_00005.parquet", trl_step())], format=TRL)
    assert list(steps) == [5]
    items = steps[5]
    assert [(item["group"], item["sample_index"], item["completion"]) for item in items] == [
        (0, 0, "5"), (0, 1, "6"), (1, 0, "20"), (1, 1, "20")]
    first = items[0]
    assert first["prompt"] == SUM and first["prompt_id"] == prompt_id(SUM)
    assert first["reward"] == 1.5
    assert first["rewards"] == {"correctness_reward": 1.0, "format_reward": 0.5}
    assert first["advantage"] == 0.7 and first["extra"] == {"answer": "5"}
    assert [item["group_degenerate"] for item in items] == [False, False, True, True]


def test_a_reward_a_function_did_not_give_is_left_out_of_the_sum():
    """TRL writes NaN where a reward function returned None, and trains on the sum without it."""
    data = trl_step(correctness_reward=[1.0, math.nan, None, 0.0])
    items = read_files([("completions_00005.parquet", data)], format=TRL)[5]
    assert [item["rewards"] for item in items[1:3]] == [{"format_reward": 0.5}] * 2
    assert [item["reward"] for item in items] == [1.5, 0.5, 0.5, 0.5]


def test_extra_columns_of_any_type_are_kept_as_json():
    data = trl_step(attempt=[1, 2, 3, 4], tools=[["calc"], [], None, ["calc", "web"]],
                    scores=[{"a": 1}, {"a": 2}, None, {"a": 3}])
    items = read_files([("c.parquet", data)], format=TRL)[5]
    assert items[0]["extra"] == {"answer": "5", "attempt": 1, "tools": ["calc"],
                                 "scores": {"a": 1}}
    assert items[2]["extra"]["tools"] is None


def scanned(data: bytes, format: str = TRL):
    with tempfile.NamedTemporaryFile() as file:
        file.write(data)
        file.flush()
        return scan_files([("c.parquet", Path(file.name))], format=format)


def test_columns_of_images_or_bytes_are_left_out_with_the_reason():
    """An image as Hugging Face datasets store one (a struct of bytes and path), a list of
    them, raw bytes."""
    image = {"bytes": b"\x89PNG\r\n", "path": "a.png"}
    data = trl_step(image=[image] * 4, images=[[image]] * 4, blob=[b"\x00\x01"] * 4)
    scan = scanned(data)
    assert list(scan.left_out) == ["image", "images", "blob"]
    assert all("images or bytes" in reason for reason in scan.left_out.values())
    items = read_files([("c.parquet", data)], format=TRL)[5]
    assert items[0]["extra"] == {"answer": "5"}


def chat(*messages: tuple[str, str | list]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in messages]


def test_a_conversational_trl_file_keeps_the_prompt_as_a_chat_and_the_answer_as_text():
    """GRPOTrainer with a conversational dataset logs prompt and completion as messages."""
    system = ("system", "Answer with a number.")
    prompts = [chat(system, ("user", SUM))] * 2 + [chat(system, ("user", PRODUCT))] * 2
    completions = [chat(("assistant", answer)) for answer in ["5", "6", "20", "20"]]
    items = read_files([("c.parquet", trl_step(prompt=prompts, completion=completions))],
                       format=TRL)[5]
    first = items[0]
    assert first["prompt"] == f"system: Answer with a number.\n\nuser: {SUM}"
    assert first["extra"]["prompt_messages"] == chat(system, ("user", SUM))
    assert [item["completion"] for item in items] == ["5", "6", "20", "20"]
    assert [(item["group"], item["sample_index"]) for item in items] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert "completion_messages" not in first["extra"]


def test_a_chat_with_images_shows_where_they_were_and_a_tool_turn_keeps_its_messages():
    prompt = chat(("user", [{"type": "image", "text": None}, {"type": "text", "text": "What?"}]))
    completion = chat(("assistant", "Let me look."), ("tool", "a cat"), ("assistant", "A cat."))
    data = trl_parquet(step=[1], prompt=[prompt], completion=[completion], r=[1.0],
                       advantage=[0.0])
    [item] = read_files([("c.parquet", data)], format=TRL)[1]
    assert item["prompt"] == "user: [image]\nWhat?"
    assert item["completion"] == "Let me look.\n\nA cat."
    assert [m["role"] for m in item["extra"]["completion_messages"]] == [
        "assistant", "tool", "assistant"]


def test_a_row_no_reward_function_scored_is_stored_unscored_not_refused():
    data = trl_step(correctness_reward=[math.nan, 0.0, 1.0, 1.0],
                    format_reward=[math.nan, 0.5, 0.5, 0.5])
    assert scanned(data).unscored == 1
    items = read_files([("c.parquet", data)], format=TRL)[5]
    assert items[0]["reward"] == 0.0 and items[0]["rewards"] == {}
    assert "'correctness_reward', 'format_reward' are all NaN" in items[0]["extra"]["unscored"]
    assert all("unscored" not in item["extra"] for item in items[1:])
    # One scored completion left in its group: whether it is degenerate is not known.
    assert items[1]["group_degenerate"] is None


def test_a_verl_line_whose_score_is_nan_or_null_is_stored_unscored():
    data = verl_lines({"input": SUM, "output": "5", "score": 1.0, "step": 1},
                      {"input": SUM, "output": "6", "score": math.nan, "step": 1},
                      {"input": SUM, "output": "7", "score": None, "step": 1},
                      {"input": SUM, "output": "8", "score": 1.0, "step": 1})
    items = read_files([("1.jsonl", data)], format=VERL)[1]
    assert [item["extra"].get("unscored") for item in items] == [
        None, "its score is NaN", "its score is missing", None]
    assert [item["reward"] for item in items] == [1.0, 0.0, 0.0, 1.0]
    assert items[0]["group_degenerate"] is True  # its two scored completions agree


def test_a_parquet_file_sent_as_verl_is_told_to_use_trl_and_the_reverse():
    with pytest.raises(RolloutFileError, match="looks like a TRL Parquet file: use format=trl"):
        read_files([("c.parquet", trl_step())], format=VERL)
    with pytest.raises(RolloutFileError, match="looks like a veRL JSON-lines dump: use "
                                               "format=verl"):
        read_files([("1.jsonl", VERL_FILES[0].read_bytes())], format=TRL)


def test_the_reward_columns_can_be_named_when_a_float_column_is_no_reward():
    data = trl_step(length_ratio=[0.1, 0.2, 0.3, 0.4])
    guessed = read_files([("c.parquet", data)], format=TRL)[5][0]
    assert "length_ratio" in guessed["rewards"]
    named = read_files([("c.parquet", data)], format=TRL,
                       reward_columns=["correctness_reward", "format_reward"])[5][0]
    assert named["reward"] == 1.5 and named["extra"]["length_ratio"] == 0.1


def test_completions_of_one_prompt_group_across_the_files_of_a_step():
    first = trl_step(prompt=[SUM, SUM, PRODUCT, PRODUCT])
    second = trl_step(prompt=[PRODUCT, "What is 1 + 1?", SUM, SUM])
    items = read_files([("a.parquet", first), ("b.parquet", second)], format=TRL)[5]
    assert [(item["group"], item["sample_index"]) for item in items] == [
        (0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert items[-1]["group_degenerate"] is None  # a group of one says nothing


# Reading veRL


def test_a_verl_dump_groups_a_steps_shuffled_completions_by_prompt():
    """veRL balances a batch by sequence length, so a prompt's completions are not together."""
    steps = read_files(files(VERL_FILES), format=VERL)
    assert list(steps) == [1, 2]
    first = steps[1]
    assert [(item["group"], item["sample_index"], item["completion"]) for item in first] == [
        (0, 0, "2 + 3 = 5. #### 5"), (0, 1, "Two plus three is five. #### 5"),
        (0, 2, "2 + 3 = 6 #### 6"),
        (1, 0, "7 + 6 = 12. #### 12"), (1, 1, "7 + 6 = 13. #### 13"),
        (1, 2, "The answer is 13. #### 13")]
    assert [item["reward"] for item in first] == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert first[0]["extra"] == {"gts": "5", "acc": True, "pred": "5"}
    assert first[0]["rewards"] == {} and first[0]["advantage"] is None
    assert first[0]["prompt"].startswith("user\nWhat is 2 + 3?")
    assert {item["group_degenerate"] for item in first} == {False}
    assert {item["group_degenerate"] for item in steps[2]} == {True}
    assert steps[2][4]["extra"]["pred"] is None


def test_a_verl_line_without_a_step_takes_the_file_names():
    data = verl_lines({"input": SUM, "output": "5", "score": 1})
    assert list(read_files([("17.jsonl", data)], format=VERL)) == [17]
    with pytest.raises(RolloutFileError, match=r"dump\.jsonl, line 1 has no 'step'"):
        read_files([("dump.jsonl", data)], format=VERL)


def test_text_postgres_cannot_store_is_replaced_not_refused():
    data = verl_lines({"input": SUM, "output": "5\x00", "score": 1, "step": 1,
                       "note": "half \ud800 pair"})
    [item] = read_files([("1.jsonl", data)], format=VERL)[1]
    assert item["completion"] == "5\ufffd" and item["extra"]["note"] == "half \ufffd pair"


# Malformed files


def test_every_problem_of_a_verl_file_is_named_by_line_and_key():
    data = b"\n".join([
        json.dumps({"input": SUM, "output": "5", "score": 1, "step": 1}).encode(),
        b'{"input": "x", "output": ',
        json.dumps({"input": SUM, "output": "5", "step": 1}).encode(),
        json.dumps({"input": SUM, "output": 5, "score": "high", "step": -1}).encode(),
        b"[1, 2]",
    ])
    with pytest.raises(RolloutFileError) as raised:
        read_files([("3.jsonl", data)], format=VERL)
    messages = raised.value.messages
    assert messages[0].startswith("3.jsonl, line 2 is not JSON")
    assert messages[1].startswith("3.jsonl, line 3 has no 'score'.")
    assert messages[2:5] == [
        "3.jsonl, line 4, key 'step': the step is -1, not a whole number 0 or more.",
        "3.jsonl, line 4, key 'score': \"high\" is not a number.",
        "3.jsonl, line 4, key 'output': 5 is not text."]
    assert messages[5].startswith("3.jsonl, line 5 is not a JSON object.")


def test_every_problem_of_a_trl_file_is_named_by_row_and_column():
    data = trl_step(prompt=[SUM, None, PRODUCT, PRODUCT], advantage=["0.7", "x", "0", "0"])
    with pytest.raises(RolloutFileError) as raised:
        read_files([("completions_00005.parquet", data)], format=TRL)
    assert raised.value.messages[:3] == [
        "completions_00005.parquet, row 1, column 'advantage': \"0.7\" is not a number.",
        "completions_00005.parquet, row 2, column 'prompt': the text is missing.",
        "completions_00005.parquet, row 2, column 'advantage': \"x\" is not a number."]


@pytest.mark.parametrize("data,problem", [
    (b"step,prompt\n1,2\n", "is not a Parquet file"),
    (b"PAR1 truncated PAR1", "cannot be read as Parquet"),
    (trl_parquet(step=[1], prompt=["p"], advantage=[0.0]), "has no 'completion' column"),
    (trl_parquet(step=[1], prompt=["p"], completion=["c"], advantage=[0.0]),
     "has no reward column"),
])
def test_a_file_that_is_no_trl_completions_file_says_what_one_is(data, problem):
    with pytest.raises(RolloutFileError, match=problem) as raised:
        read_files([("", data)], format=TRL)
    assert raised.value.messages[0].startswith("The file ")


def test_a_named_reward_column_must_exist():
    with pytest.raises(RolloutFileError, match="has no reward column 'accuracy'; its columns"):
        read_files([("c.parquet", trl_step())], format=TRL, reward_columns=["accuracy"])


def test_the_problems_listed_stop_at_a_few():
    data = b"\n".join(b"not json" for _ in range(MAX_ERRORS + 5))
    with pytest.raises(RolloutFileError) as raised:
        read_files([("1.jsonl", data)], format=VERL)
    assert len(raised.value.messages) == MAX_ERRORS + 1
    assert raised.value.messages[-1] == "… and 5 more problems."


def test_an_empty_verl_file_is_refused():
    with pytest.raises(RolloutFileError, match="holds no rollouts"):
        read_files([("1.jsonl", b"\n\n")], format=VERL)


# The command, on Postgres


@pytest.mark.django_db
def test_the_command_imports_files_into_a_new_tracked_run(project, user, tmp_path, capsys):
    paths = []
    for step in (1, 2):
        path = tmp_path / f"completions_{step:05d}.parquet"
        path.write_bytes(trl_step(step))
        paths.append(str(path))
    call_command("import_rollouts", "--format", "trl", "--project", str(project.pk),
                 "--experiment", "trl-grpo", *paths)

    run = Run.objects.get()
    assert run.is_tracked and run.experiment.name == "trl-grpo" and run.launched_by == user
    assert run.status == RunStatus.SUCCEEDED and run.progress_step == 2
    assert run.name == "imported from completions_00001.parquet and 1 more"
    assert Rollout.objects.filter(run=run).count() == 8
    stored = Rollout.objects.get(run=run, step=2, group=1, sample_index=0)
    assert (stored.prompt, stored.completion, stored.reward, stored.advantage) == (
        PRODUCT, "20", 1.5, 0.0)
    assert stored.rewards == {"correctness_reward": 1.0, "format_reward": 0.5}
    assert stored.group_degenerate is True and stored.extra == {"answer": "20"}
    assert capsys.readouterr().out.strip() == (
        f"Imported 8 rollouts of 2 steps from 2 files into run {run.pk} (trl-grpo #1): "
        "8 new, 0 already there.")


@pytest.mark.django_db
def test_importing_the_same_files_again_stores_nothing_twice(project, user, capsys):
    tracked = tracking.tracked_experiment_get_or_create(project=project, user=user, name="verl")
    run = tracking.tracked_run_create(experiment=tracked, user=user)
    paths = [str(path) for path in VERL_FILES]
    call_command("import_rollouts", "--format", "verl", "--run", str(run.pk), *paths)
    call_command("import_rollouts", "--format", "verl", "--run", str(run.pk), *paths)
    assert Rollout.objects.filter(run=run).count() == 12
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 new, 12 already there.")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # its script, not the import, ends it


@pytest.mark.django_db
def test_a_bad_file_among_many_imports_nothing(project, user, tmp_path):
    bad = tmp_path / "3.jsonl"
    bad.write_text('{"input": "q", "output": "a", "score": "high"}\n')
    with pytest.raises(CommandError) as raised:
        call_command("import_rollouts", "--format", "verl", "--project", str(project.pk),
                     "--experiment", "verl", *map(str, VERL_FILES), str(bad))
    assert str(raised.value) == ("Nothing was imported:\n"
                                 "3.jsonl, line 1, key 'score': \"high\" is not a number.")
    assert not Run.objects.exists() and not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_command_refuses_a_file_past_the_limits_and_imports_nothing(project, user,
                                                                        tmp_path):
    hostile_file = tmp_path / "completions_00002.parquet"
    hostile_file.write_bytes(hostile.many_small_completions(4_000_000))
    good = tmp_path / "completions_00001.parquet"
    good.write_bytes(trl_step(1))
    with pytest.raises(CommandError) as raised:
        call_command("import_rollouts", "--format", "trl", "--project", str(project.pk),
                     "--experiment", "trl", str(good), str(hostile_file))
    assert str(raised.value) == (
        "Nothing was imported:\ncompletions_00002.parquet has 4,000,000 rows, more than the "
        f"limit of {LIMITS.rows:,}. Import its rows in smaller files.")
    assert not Run.objects.exists() and not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_command_records_a_run_only_as_someone_who_may_add_one(project, member_of):
    viewer = member_of("viewer")
    with pytest.raises(CommandError, match="need the member role"):
        call_command("import_rollouts", "--format", "verl", "--project", str(project.pk),
                     "--experiment", "verl", "--user", viewer.username, str(VERL_FILES[0]))
    assert not Run.objects.exists()


# The API, on Postgres


@pytest.fixture
def tracked_run(project, user):
    tracked = tracking.tracked_experiment_get_or_create(project=project, user=user, name="trl")
    return tracking.tracked_run_create(experiment=tracked, user=user)


@pytest.fixture
def api(user):
    return Client(headers={"Authorization": f"Bearer {token_create(user=user, name='t')[1]}"})


@pytest.mark.django_db
def test_the_api_imports_a_parquet_body_and_a_multipart_file(api, tracked_run):
    url = f"/api/runs/{tracked_run.pk}/rollouts/import"
    response = api.post(url, trl_step(3), content_type="application/octet-stream")
    assert response.status_code == 200, response.content
    nothing_left_out = {"unscored": 0, "left_out": []}
    assert response.json() == {"received": 4, "stored": 4, "steps": 1, **nothing_left_out}
    with VERL_FILES[0].open("rb") as upload:
        response = api.post(f"{url}?format=verl", {"file": upload})
    assert response.json() == {"received": 6, "stored": 6, "steps": 1, **nothing_left_out}
    again = api.post(url, trl_step(3), content_type="application/octet-stream")
    assert again.json() == {"received": 4, "stored": 0, "steps": 1, **nothing_left_out}
    assert Rollout.objects.filter(run=tracked_run).count() == 10


@pytest.mark.django_db
def test_the_api_refuses_a_malformed_file_whole(api, tracked_run):
    body = verl_lines({"input": SUM, "output": "5", "score": 1, "step": 1},
                      {"input": SUM, "output": "6", "step": 1})
    response = api.post(f"/api/runs/{tracked_run.pk}/rollouts/import?format=verl", body,
                        content_type="application/x-ndjson")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"].startswith("Line 2 has no 'score'.")
    assert not Rollout.objects.exists()


def token_client(someone) -> Client:
    return Client(headers={"Authorization": f"Bearer {token_create(user=someone, name='t')[1]}"})


@pytest.mark.django_db
def test_a_tracked_run_that_has_ended_takes_files_from_its_author_and_admins(
        project, user, member_of):
    """MLflow ends a TRL run when training ends, before anyone imports its completions."""
    member, other = member_of("member"), member_of("member", "other-member")
    tracked = tracking.tracked_experiment_get_or_create(project=project, user=member, name="trl")
    run = tracking.tracked_run_create(experiment=tracked, user=member)
    tracking.tracked_run_finish(run_id=run.pk, status=RunStatus.SUCCEEDED)
    url = f"/api/runs/{run.pk}/rollouts/import"

    refused = token_client(other).post(url, trl_step(1), content_type="application/octet-stream")
    by_author = token_client(member).post(url, trl_step(1),
                                          content_type="application/octet-stream")
    by_admin = token_client(user).post(url, trl_step(2), content_type="application/octet-stream")

    assert refused.status_code == 403
    assert "only its author and the team's admins" in refused.json()["detail"]
    assert by_author.status_code == by_admin.status_code == 200
    assert set(Rollout.objects.filter(run=run).values_list("step", flat=True)) == {1, 2}
    assert Run.objects.get(pk=run.pk).status == RunStatus.SUCCEEDED


@pytest.mark.django_db
def test_a_run_launched_from_rlab_that_has_ended_takes_no_file(api, experiment, user):
    from webapp.runs.services import run_cancel, run_launch

    run = run_launch(experiment=experiment, user=user)
    run_cancel(run=run, user=user)
    response = api.post(f"/api/runs/{run.pk}/rollouts/import", trl_step(),
                        content_type="application/octet-stream")
    assert response.status_code == 409
    assert not Rollout.objects.exists()


# Large and hostile files: read as streams, within limits, stored all or nothing


def test_a_group_split_across_batches_keeps_its_sample_order_and_degenerate_flag():
    same = [{"input": SUM, "output": str(n), "score": 1, "step": 1} for n in range(5)]
    mixed = [{"input": PRODUCT, "output": str(n), "score": n % 2, "step": 1} for n in range(3)]
    steps = read_files([("1.jsonl", verl_lines(*same[:2], *mixed, *same[2:]))], format=VERL,
                       batch=2)
    assert [(item["group"], item["sample_index"], item["completion"], item["group_degenerate"])
            for item in steps[1]] == [
        (0, 0, "0", True), (0, 1, "1", True), (0, 2, "2", True), (0, 3, "3", True),
        (0, 4, "4", True), (1, 0, "0", False), (1, 1, "1", False), (1, 2, "2", False)]


def trl_text_bomb(rows: int, text_bytes: int) -> bytes:
    """A TRL completions file whose prompt and completion repeat one long text in every row."""
    return hostile.repeated_text(rows, text_bytes, columns=("prompt", "completion"),
                                 step=[1] * rows, reward=[1.0] * rows)


def import_url(run) -> str:
    return f"/api/runs/{run.pk}/rollouts/import"


@pytest.mark.django_db
def test_the_api_refuses_a_small_parquet_of_four_million_rows_by_its_footer(api, tracked_run):
    data = hostile.many_small_completions(4_000_000)
    assert len(data) < 100_000
    response = api.post(import_url(tracked_run), data, content_type="application/octet-stream")
    assert response.status_code == 422
    assert [error["msg"] for error in response.json()["detail"]] == [
        f"The file has 4,000,000 rows, more than the limit of {LIMITS.rows:,}. Import its rows "
        f"in smaller files."]
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_a_small_parquet_whose_text_decodes_past_the_limit(api, tracked_run):
    data = trl_text_bomb(20_000, 10_000)  # 400 MB once decoded
    assert len(data) < 100_000
    response = api.post(import_url(tracked_run), data, content_type="application/octet-stream")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"] == ("The file holds more than 256 MB of data once decoded, the limit. "
                            "Import its rows in smaller files.")
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_a_parquet_row_group_that_lies_about_its_size(api, tracked_run):
    data = hostile.with_footer(trl_step(), {hostile.COLUMN_TOTAL_UNCOMPRESSED_SIZE: 2**50})
    response = api.post(import_url(tracked_run), data, content_type="application/octet-stream")
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["msg"].startswith("The file declares ")
    assert error["msg"].endswith(" of data once uncompressed, more than the limit of 256 MB. "
                                 "Import its rows in smaller files.")


@pytest.mark.django_db
def test_the_api_refuses_a_verl_line_longer_than_a_row_may_be(api, tracked_run):
    long = {"input": SUM, "output": "x" * LIMITS.row_bytes, "score": 1, "step": 1}
    body = verl_lines({"input": SUM, "output": "5", "score": 1, "step": 1}, long)
    response = api.post(f"{import_url(tracked_run)}?format=verl", body,
                        content_type="application/x-ndjson")
    assert response.status_code == 422
    assert [error["msg"] for error in response.json()["detail"]] == [
        "Line 2 is longer than 8 MB, the limit for one row. Import its rows in smaller files."]
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_a_verl_file_over_the_row_limit(api, tracked_run):
    line = json.dumps({"input": SUM, "output": "5", "score": 1, "step": 1}).encode() + b"\n"
    response = api.post(f"{import_url(tracked_run)}?format=verl", line * (LIMITS.rows + 1),
                        content_type="application/x-ndjson")
    assert response.status_code == 422
    assert [error["msg"] for error in response.json()["detail"]] == [
        f"The file has more than {LIMITS.rows:,} rows, the limit. Import its rows in smaller "
        f"files."]
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_api_stores_nothing_of_a_large_file_whose_last_line_is_bad(api, tracked_run):
    good = [{"input": f"What is {n} + 1?", "output": str(n + 1), "score": 1, "step": 1}
            for n in range(3000)]
    body = verl_lines(*good, {"input": SUM, "output": "5", "step": 1})
    response = api.post(f"{import_url(tracked_run)}?format=verl", body,
                        content_type="application/x-ndjson")
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("Line 3001 has no 'score'.")
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_the_api_imports_a_large_file_with_exactly_its_rows(api, tracked_run):
    entries = [{"input": f"What is {n // 8} + 1?", "output": f"{n}", "score": n % 3,
                "step": 1 + n // 4000} for n in range(20_000)]
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as upload:
        upload.write(verl_lines(*entries))
        upload.seek(0)
        response = api.post(f"{import_url(tracked_run)}?format=verl", {"file": upload})
    assert response.status_code == 200, response.content
    assert response.json() == {"received": 20_000, "stored": 20_000, "steps": 5, "unscored": 0,
                               "left_out": []}
    stored = Rollout.objects.filter(run=tracked_run)
    assert stored.count() == 20_000
    assert sorted(stored.values_list("completion", flat=True)) == sorted(
        str(n) for n in range(20_000))
    last = stored.get(step=5, group=499, sample_index=7)
    assert (last.prompt, last.completion, last.reward) == ("What is 2499 + 1?", "19999", 1.0)
    assert not last.group_degenerate
