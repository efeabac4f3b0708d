"""webapp.datasets.mapping: guessing the column of each role, and normalising a file's rows."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webapp.datasets import mapping
from webapp.datasets.mapping import guess_mapping, normalise
from webapp.datasets.parsing import MAX_ROW_BYTES, DatasetError
from webapp.datasets.streaming import Limits

LIMIT = 10_000
LIMITS = Limits(rows=1000, decoded_bytes=40_000, row_bytes=MAX_ROW_BYTES)


def _parquet(columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _normalise(data: bytes, mapping: dict[str, str], filename: str = "data.jsonl",
               kind: str = "prompts") -> list[dict]:
    out = io.BytesIO()
    summary = normalise(io.BytesIO(data), filename=filename, max_bytes=LIMIT, limits=LIMITS,
                        kind=kind, mapping=mapping, out=out)
    rows = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert summary.row_count == len(rows)
    return rows


def test_guesses_follow_common_column_names():
    assert guess_mapping(["id", "Question", "ground-truth", "Difficulty", "data_source"],
                         "prompts") == {"prompt": "Question", "answer": "ground-truth",
                                        "difficulty": "Difficulty", "source": "data_source"}
    assert guess_mapping(["instruction", "chosen", "rejected"], "preferences") == {
        "prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}
    assert guess_mapping(["a", "b"], "prompts") == {"prompt": "", "answer": "", "difficulty": "",
                                                    "source": ""}


def test_normalise_keeps_the_mapped_columns_under_their_roles():
    assert _normalise(b'{"q": "1 + 1?", "a": 2, "id": 7}\n',
                      mapping={"prompt": "q", "answer": "a"}) == [
        {"prompt": "1 + 1?", "answer": "2"}]


def test_normalise_writes_a_mapped_difficulty_as_a_number_or_none():
    data = b"q,a,level\n1 + 1?,2,3\n2 + 2?,4,\n3 + 3?,6, 0.5\n"
    assert _normalise(data, {"prompt": "q", "answer": "a", "difficulty": "level"},
                      "data.csv") == [
        {"prompt": "1 + 1?", "answer": "2", "difficulty": 3.0},
        {"prompt": "2 + 2?", "answer": "4", "difficulty": None},
        {"prompt": "3 + 3?", "answer": "6", "difficulty": 0.5}]


def test_normalise_leaves_out_a_difficulty_left_unmapped():
    assert _normalise(b'{"q": "1 + 1?", "a": 2, "difficulty": 1}\n',
                      {"prompt": "q", "answer": "a", "difficulty": ""}) == [
        {"prompt": "1 + 1?", "answer": "2"}]


def test_normalise_names_rows_whose_difficulty_is_no_number():
    data = (b'{"q": "a", "a": 1, "d": "hard"}\n{"q": "b", "a": 1, "d": [1]}\n'
            b'{"q": "c", "a": 1, "d": true}\n{"q": "d", "a": 1, "d": 2}\n')
    with pytest.raises(DatasetError) as info:
        _normalise(data, {"prompt": "q", "answer": "a", "difficulty": "d"})
    advice = ("Map a column of numbers as the difficulty (lower = easier, empty cells for "
              "unknown), or none.")
    assert info.value.messages == [
        f"Line 1: the difficulty 'hard' is not a number. {advice}",
        "Line 2: the difficulty column 'd' holds a list, not a number.",
        f"Line 3: the difficulty 'true' is not a number. {advice}",
    ]


def test_normalise_writes_a_mapped_source_as_text_and_names_rows_without_one():
    data = b'{"q": "1 + 1?", "a": 2, "from": "gsm8k"}\n{"q": "2 + 2?", "a": 4, "from": 3}\n'
    assert _normalise(data, {"prompt": "q", "answer": "a", "source": "from"}) == [
        {"prompt": "1 + 1?", "answer": "2", "source": "gsm8k"},
        {"prompt": "2 + 2?", "answer": "4", "source": "3"}]
    with pytest.raises(DatasetError) as info:
        _normalise(data + b'{"q": "3 + 3?", "a": 6, "from": ""}\n',
                   {"prompt": "q", "answer": "a", "source": "from"})
    assert info.value.messages == ["Line 3 has an empty 'from', the source column."]


def test_normalise_names_rows_with_missing_or_empty_values():
    data = (b'{"q": "1 + 1?", "a": 2}\n{"q": "  ", "a": 3}\n{"q": "x"}\n'
            b'{"q": "y", "a": "two"}\n{"q": ["z"], "a": 1}\n')
    with pytest.raises(DatasetError) as info:
        _normalise(data, {"prompt": "q", "answer": "a"})
    assert info.value.messages == [
        "Line 2 has an empty 'q', the prompt column.",
        "Line 3 has no 'a', the answer column.",
        "Line 4: the answer 'two' is not a number. Prompt datasets are scored by comparing the "
        "last number of a completion with the answer: map a column that holds just the final "
        "number.",
        "Line 5: the prompt column 'q' holds a list, not text.",
    ]


def test_normalise_counts_parquet_rows():
    data = _parquet({"prompt": ["p", None], "chosen": ["c", "c"], "rejected": ["r", "r"]})
    with pytest.raises(DatasetError) as info:
        _normalise(data, {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
                   "data.parquet", "preferences")
    assert info.value.messages == ["Row 2 has an empty 'prompt', the prompt column."]


def test_a_jsonl_line_is_one_line_whatever_the_text():
    row = {"prompt": "two\nlines\u2028and a separator", "answer": "1"}
    data = mapping.jsonl_line(row)
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    assert json.loads(data) == row


@pytest.mark.parametrize("mapping,message", [
    ({"prompt": "q", "answer": ""}, "Choose a column for: answer."),
    ({"prompt": "q", "answer": "a", "difficulty": "zz"},
     "The file has no such column for: difficulty ('zz')."),
    ({"prompt": "q", "answer": "a", "difficulty": "a"},
     "answer and difficulty both use the column 'a'. Choose a different column for each."),
    ({"prompt": "q", "answer": "zz"}, "The file has no such column for: answer ('zz')."),
    ({"prompt": "q", "answer": "q"},
     "prompt and answer both use the column 'q'. Choose a different column for each."),
])
def test_normalise_refuses_an_incomplete_mapping(mapping, message):
    with pytest.raises(DatasetError) as info:
        _normalise(b'{"q": "p", "a": 1}\n', mapping)
    assert info.value.messages == [message]
