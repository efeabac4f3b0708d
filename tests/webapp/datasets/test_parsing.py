import doctest
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webapp.datasets import parsing
from webapp.datasets.parsing import DatasetError, Structured, guess_mapping, normalise, parse

LIMIT = 10_000


def _parse(data: bytes, filename: str = "data.jsonl", kind: str | None = "prompts"):
    return parse(data, filename=filename, max_bytes=LIMIT, kind=kind)


def _error(data: bytes, filename: str = "data.jsonl", kind: str | None = "prompts") -> list[str]:
    with pytest.raises(DatasetError) as info:
        _parse(data, filename, kind)
    return info.value.messages


def _parquet(columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def test_doctests_pass():
    assert doctest.testmod(parsing).failed == 0


# Happy paths


def test_jsonl_rows_keep_their_line_numbers_and_skip_blank_lines():
    table = _parse(b'{"question": "1 + 1?", "answer": 2}\n\n'
                   b'{"question": "2 + 2?", "answer": "4"}\n')
    assert table.format == "jsonl"
    assert table.columns == ("question", "answer")
    assert [(r.number, r.cells) for r in table.rows] == [
        (1, {"question": "1 + 1?", "answer": "2"}), (3, {"question": "2 + 2?", "answer": "4"})]


def test_jsonl_columns_are_the_union_of_keys_in_first_seen_order():
    table = _parse(b'{"a": "x", "b": "y"}\n{"c": "z", "a": "w"}\n')
    assert table.columns == ("a", "b", "c")


def test_jsonl_nested_values_are_kept_as_structured_cells():
    table = _parse(b'{"prompt": "p", "answer": 1, "meta": {"source": "gsm8k"}}\n')
    assert table.rows[0].cells["meta"] == Structured("an object", '{"source": "gsm8k"}')


def test_csv_with_quoted_delimiters_and_line_breaks():
    data = b'prompt,answer\n"Add 1, 2\nand 3.",6\nplain,7\n'
    table = _parse(data, "data.csv")
    assert table.format == "csv"
    assert [(r.number, r.cells["prompt"]) for r in table.rows] == [(2, "Add 1, 2\nand 3."),
                                                                  (4, "plain")]


@pytest.mark.parametrize("filename,data", [
    ("data.csv", b"prompt;answer\nfirst;1\n"),
    ("data.csv", b"prompt\tanswer\nfirst\t1\n"),
    ("data.tsv", b"prompt\tanswer\nfirst, with a comma\t1\n"),
])
def test_csv_delimiter_comes_from_the_header_or_the_tsv_name(filename, data):
    table = _parse(data, filename)
    assert table.columns == ("prompt", "answer")
    assert table.rows[0].cells["answer"] == "1"


def test_parquet_rows_are_numbered_from_one():
    data = _parquet({"problem": ["1 + 1?", "2 + 2?"], "solution": [2, 4],
                     "tags": [["easy"], []]})
    table = _parse(data, "data.parquet")
    assert table.format == "parquet" and table.unit == "row"
    assert table.columns == ("problem", "solution", "tags")
    assert [(r.number, r.cells["problem"], r.cells["solution"]) for r in table.rows] == [
        (1, "1 + 1?", "2"), (2, "2 + 2?", "4")]
    assert table.rows[0].cells["tags"] == Structured("a list", '["easy"]')


def test_parquet_is_recognised_by_content_whatever_its_name():
    assert _parse(_parquet({"prompt": ["p"], "answer": ["1"]}), "upload.bin").format == "parquet"


def test_utf8_bom_is_ignored():
    jsonl = _parse(b'\xef\xbb\xbf{"prompt": "p", "answer": 1}\n', "data.jsonl")
    assert jsonl.columns == ("prompt", "answer")
    csv_table = _parse(b"\xef\xbb\xbfprompt,answer\np,1\n", "data.csv")
    assert csv_table.columns == ("prompt", "answer")


def test_crlf_line_endings_are_read_like_lf():
    jsonl = _parse(b'{"prompt": "p", "answer": 1}\r\n{"prompt": "q", "answer": 2}\r\n')
    assert [r.cells["prompt"] for r in jsonl.rows] == ["p", "q"]
    csv_table = _parse(b"prompt,answer\r\np,1\r\nq,2\r\n", "data.csv")
    assert [(r.number, r.cells["answer"]) for r in csv_table.rows] == [(2, "1"), (3, "2")]


def test_format_is_sniffed_from_content_when_the_name_says_nothing():
    assert _parse(b'  {"prompt": "p", "answer": 1}\n', "upload").format == "jsonl"
    assert _parse(b"prompt,answer\np,1\n", "upload").format == "csv"


# Errors: each with what and where


def test_empty_file():
    assert _error(b"") == ["The file is empty."]


def test_file_of_blank_lines_is_empty():
    assert _error(b"\n  \r\n\n") == ["The file is empty: it holds only blank lines."]


def test_over_the_size_limit():
    [message] = _error(b"x" * (LIMIT + 1))
    assert "over the limit of 9.8 KB" in message


def test_not_utf8_names_the_byte_offset_and_line():
    data = b'{"prompt": "ok", "answer": 1}\n{"prompt": "caf\xe9"}\n'
    [message] = _error(data)
    assert message.startswith(f"The file is not UTF-8: the byte at offset {data.index(0xE9)} "
                              f"(line 2) is 0xE9")


def test_utf16_is_named():
    data = '{"prompt": "p"}\n'.encode("utf-16")
    assert _error(data) == ["The file is UTF-16 text. Save it as UTF-8 and upload it again."]


def test_nul_byte_in_a_text_file():
    [message] = _error(b"prompt,answer\np\x00,1\n", "data.csv")
    assert message.startswith("Line 2 contains a NUL character")


def test_malformed_jsonl_lines_are_listed_with_their_numbers():
    data = b'{"prompt": "p", "answer": 1}\n{"prompt": "p",\n[1, 2]\n"text"\n{"prompt": "q"}\n'
    assert _error(data) == [
        "Line 2: not valid JSON (Expecting property name enclosed in double quotes at column 16).",
        'Line 3: expected a JSON object ({"prompt": ...}), got a list. A JSON array must be '
        "converted to JSON lines: one object per line.",
        'Line 4: expected a JSON object ({"prompt": ...}), got a string.',
    ]


def test_jsonl_escaped_nul_and_lone_surrogates_are_refused():
    messages = _error(b'{"prompt": "a\\u0000b"}\n{"prompt": "\\ud800"}\n')
    assert messages == ["Line 1: the value of 'prompt' contains a NUL character.",
                        "Line 2: the value of 'prompt' contains an unpaired surrogate escape "
                        "(\\ud800-\\udfff)."]


def test_jsonl_errors_stop_at_ten_and_count_the_rest():
    messages = _error(b"{bad\n" * 13)
    assert len(messages) == 11
    assert messages[9].startswith("Line 10:")
    assert messages[10] == "… and 3 more problems."


def test_csv_row_with_the_wrong_number_of_fields():
    assert _error(b"prompt,answer\np,1\nq,2,3\n", "data.csv") == [
        "Line 3: 3 fields, but the header has 2. Quote fields that contain the delimiter "
        "(a comma)."]


def test_csv_unclosed_quote_names_the_line_it_starts_on():
    [message] = _error(b'prompt,answer\np,1\n"never closed,2\nq,3\n', "data.csv")
    assert message.startswith("Line 3 (to line 4): malformed CSV (unexpected end of data)")


def test_csv_header_problems():
    assert _error(b"prompt,,prompt\np,1,2\n", "data.csv") == [
        "Column 2 of the header (the first line) has no name. Name every column.",
        "Columns 1 and 3 of the header are both named 'prompt'. Give every column its own name.",
    ]


def test_header_without_rows():
    assert _error(b"prompt,answer\n", "data.csv") == ["The file has column names but no rows."]


def test_too_few_columns_for_the_kind():
    assert _error(b"prompt,chosen\np,c\n", "data.csv", "preferences") == [
        "A preference dataset needs 3 columns (prompt, chosen, rejected), and the file has 2: "
        "'prompt', 'chosen'. Add the missing column."]


def test_not_a_parquet_file():
    [message] = _error(b"PAR1 but nothing else", "data.parquet")
    assert message.startswith("This is not a Parquet file")


def test_damaged_parquet_file():
    data = _parquet({"prompt": ["p"] * 50, "answer": ["1"] * 50})
    damaged = data[:4] + b"\x00" * (len(data) - 8) + data[-4:]
    [message] = _error(damaged, "data.parquet")
    assert message.startswith("The Parquet file cannot be read (")


def test_parquet_that_expands_past_the_limit():
    data = _parquet({"prompt": ["x" * 5000] * 100, "answer": ["1"] * 100})
    assert len(data) < LIMIT
    [message] = _error(data, "data.parquet")
    assert message == ("The Parquet file's data is more than 97.7 KB uncompressed. "
                       "Split the dataset.")


# Mapping


def test_guesses_follow_common_column_names():
    assert guess_mapping(["id", "Question", "ground-truth", "Difficulty"], "prompts") == {
        "prompt": "Question", "answer": "ground-truth", "difficulty": "Difficulty"}
    assert guess_mapping(["instruction", "chosen", "rejected"], "preferences") == {
        "prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}
    assert guess_mapping(["a", "b"], "prompts") == {"prompt": "", "answer": "", "difficulty": ""}


def test_normalise_keeps_the_mapped_columns_under_their_roles():
    table = _parse(b'{"q": "1 + 1?", "a": 2, "id": 7}\n')
    assert normalise(table, kind="prompts", mapping={"prompt": "q", "answer": "a"}) == [
        {"prompt": "1 + 1?", "answer": "2"}]


def test_normalise_writes_a_mapped_difficulty_as_a_number_or_none():
    table = _parse(b"q,a,level\n1 + 1?,2,3\n2 + 2?,4,\n3 + 3?,6, 0.5\n", "data.csv")
    assert normalise(table, kind="prompts",
                     mapping={"prompt": "q", "answer": "a", "difficulty": "level"}) == [
        {"prompt": "1 + 1?", "answer": "2", "difficulty": 3.0},
        {"prompt": "2 + 2?", "answer": "4", "difficulty": None},
        {"prompt": "3 + 3?", "answer": "6", "difficulty": 0.5}]


def test_normalise_leaves_out_a_difficulty_left_unmapped():
    table = _parse(b'{"q": "1 + 1?", "a": 2, "difficulty": 1}\n')
    assert normalise(table, kind="prompts",
                     mapping={"prompt": "q", "answer": "a", "difficulty": ""}) == [
        {"prompt": "1 + 1?", "answer": "2"}]


def test_normalise_names_rows_whose_difficulty_is_no_number():
    table = _parse(b'{"q": "a", "a": 1, "d": "hard"}\n{"q": "b", "a": 1, "d": [1]}\n'
                   b'{"q": "c", "a": 1, "d": true}\n{"q": "d", "a": 1, "d": 2}\n')
    with pytest.raises(DatasetError) as info:
        normalise(table, kind="prompts", mapping={"prompt": "q", "answer": "a", "difficulty": "d"})
    advice = ("Map a column of numbers as the difficulty (lower = easier, empty cells for "
              "unknown), or none.")
    assert info.value.messages == [
        f"Line 1: the difficulty 'hard' is not a number. {advice}",
        "Line 2: the difficulty column 'd' holds a list, not a number.",
        f"Line 3: the difficulty 'true' is not a number. {advice}",
    ]


def test_normalise_names_rows_with_missing_or_empty_values():
    table = _parse(b'{"q": "1 + 1?", "a": 2}\n{"q": "  ", "a": 3}\n{"q": "x"}\n'
                   b'{"q": "y", "a": "two"}\n{"q": ["z"], "a": 1}\n')
    with pytest.raises(DatasetError) as info:
        normalise(table, kind="prompts", mapping={"prompt": "q", "answer": "a"})
    assert info.value.messages == [
        "Line 2 has an empty 'q', the prompt column.",
        "Line 3 has no 'a', the answer column.",
        "Line 4: the answer 'two' is not a number. Prompt datasets are scored by comparing the "
        "last number of a completion with the answer: map a column that holds just the final "
        "number.",
        "Line 5: the prompt column 'q' holds a list, not text.",
    ]


def test_normalise_counts_parquet_rows():
    table = _parse(_parquet({"prompt": ["p", None], "chosen": ["c", "c"],
                             "rejected": ["r", "r"]}), "data.parquet", "preferences")
    with pytest.raises(DatasetError) as info:
        normalise(table, kind="preferences",
                  mapping={"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"})
    assert info.value.messages == ["Row 2 has an empty 'prompt', the prompt column."]


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
    table = _parse(b'{"q": "p", "a": 1}\n')
    with pytest.raises(DatasetError) as info:
        normalise(table, kind="prompts", mapping=mapping)
    assert info.value.messages == [message]


def test_to_jsonl_writes_one_line_per_row_whatever_the_text():
    rows = [{"prompt": "two\nlines\u2028and a separator", "answer": "1"}]
    data = parsing.to_jsonl(rows)
    assert data.count(b"\n") == 1
    assert [json.loads(line) for line in data.decode().split("\n") if line] == rows
