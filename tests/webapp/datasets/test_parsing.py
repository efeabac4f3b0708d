import doctest
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.webapp.datasets import hostile
from webapp.datasets import parsing, streaming
from webapp.datasets.cells import Structured
from webapp.datasets.parsing import MAX_ROW_BYTES, DatasetError, Reader, preview, scan
from webapp.datasets.streaming import Limits

LIMIT = 10_000
LIMITS = Limits(rows=1000, decoded_bytes=40_000, row_bytes=MAX_ROW_BYTES)


def _read(data: bytes, filename: str = "data.jsonl", limits: Limits = LIMITS):
    """The reader of a file and every row it yields; DatasetError for any problem."""
    reader = Reader(io.BytesIO(data), filename=filename, max_bytes=LIMIT, limits=limits)
    rows = list(reader)
    reader.problems.raise_any()
    return reader, rows


def _scan(data: bytes, filename: str = "data.jsonl", kind: str | None = "prompts",
          limits: Limits = LIMITS):
    return scan(io.BytesIO(data), filename=filename, max_bytes=LIMIT, limits=limits, kind=kind)


def _error(data: bytes, filename: str = "data.jsonl", kind: str | None = "prompts",
           limits: Limits = LIMITS) -> list[str]:
    with pytest.raises(DatasetError) as info:
        _scan(data, filename, kind, limits)
    return info.value.messages


def _parquet(columns: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def test_doctests_pass():
    assert doctest.testmod(parsing).failed == 0
    assert doctest.testmod(streaming).failed == 0


# Happy paths


def test_jsonl_rows_keep_their_line_numbers_and_skip_blank_lines():
    reader, rows = _read(b'{"question": "1 + 1?", "answer": 2}\n\n'
                         b'{"question": "2 + 2?", "answer": "4"}\n')
    assert reader.format == "jsonl"
    assert reader.columns == ("question", "answer")
    assert [(r.number, r.cells) for r in rows] == [
        (1, {"question": "1 + 1?", "answer": "2"}), (3, {"question": "2 + 2?", "answer": "4"})]


def test_jsonl_columns_are_the_union_of_keys_in_first_seen_order():
    assert _scan(b'{"a": "x", "b": "y"}\n{"c": "z", "a": "w"}\n').columns == ("a", "b", "c")


def test_jsonl_nested_values_are_kept_as_structured_cells():
    _, rows = _read(b'{"prompt": "p", "answer": 1, "meta": {"source": "gsm8k"}}\n')
    assert rows[0].cells["meta"] == Structured("an object", '{"source": "gsm8k"}')


def test_csv_with_quoted_delimiters_and_line_breaks():
    data = b'prompt,answer\n"Add 1, 2\nand 3.",6\nplain,7\n'
    reader, rows = _read(data, "data.csv")
    assert reader.format == "csv"
    assert [(r.number, r.cells["prompt"]) for r in rows] == [(2, "Add 1, 2\nand 3."),
                                                            (4, "plain")]


@pytest.mark.parametrize("filename,data", [
    ("data.csv", b"prompt;answer\nfirst;1\n"),
    ("data.csv", b"prompt\tanswer\nfirst\t1\n"),
    ("data.tsv", b"prompt\tanswer\nfirst, with a comma\t1\n"),
])
def test_csv_delimiter_comes_from_the_header_or_the_tsv_name(filename, data):
    reader, rows = _read(data, filename)
    assert reader.columns == ("prompt", "answer")
    assert rows[0].cells["answer"] == "1"


def test_parquet_rows_are_numbered_from_one():
    data = _parquet({"problem": ["1 + 1?", "2 + 2?"], "solution": [2, 4],
                     "tags": [["easy"], []]})
    reader, rows = _read(data, "data.parquet")
    assert reader.format == "parquet" and reader.unit == "row"
    assert reader.columns == ("problem", "solution", "tags")
    assert [(r.number, r.cells["problem"], r.cells["solution"]) for r in rows] == [
        (1, "1 + 1?", "2"), (2, "2 + 2?", "4")]
    assert rows[0].cells["tags"] == Structured("a list", '["easy"]')


def test_parquet_is_recognised_by_content_whatever_its_name():
    assert _scan(_parquet({"prompt": ["p"], "answer": ["1"]}), "upload.bin").format == "parquet"


def test_utf8_bom_is_ignored():
    jsonl = _scan(b'\xef\xbb\xbf{"prompt": "p", "answer": 1}\n', "data.jsonl")
    assert jsonl.columns == ("prompt", "answer")
    csv_table = _scan(b"\xef\xbb\xbfprompt,answer\np,1\n", "data.csv")
    assert csv_table.columns == ("prompt", "answer")


def test_crlf_line_endings_are_read_like_lf():
    _, jsonl = _read(b'{"prompt": "p", "answer": 1}\r\n{"prompt": "q", "answer": 2}\r\n')
    assert [r.cells["prompt"] for r in jsonl] == ["p", "q"]
    _, csv_rows = _read(b"prompt,answer\r\np,1\r\nq,2\r\n", "data.csv")
    assert [(r.number, r.cells["answer"]) for r in csv_rows] == [(2, "1"), (3, "2")]


def test_format_is_sniffed_from_content_when_the_name_says_nothing():
    assert _scan(b'  {"prompt": "p", "answer": 1}\n', "upload").format == "jsonl"
    assert _scan(b"prompt,answer\np,1\n", "upload").format == "csv"


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
    assert message == ("The file holds more than 39.1 KB of data once decoded, the limit. "
                       "Split the dataset into smaller files, or ask an administrator to raise "
                       "RLAB_DATASET_MAX_DECODED_BYTES.")


# Limits, checked as the file is read


def test_lone_carriage_returns_end_csv_lines_in_a_file_longer_than_a_row_may_be():
    rows = b"".join(b"q%d,%d\r" % (n, n) for n in range(50))
    reader, read = _read(b"prompt,answer\r" + rows, "data.csv",
                         Limits(rows=100, decoded_bytes=10_000, row_bytes=64))
    assert reader.columns == ("prompt", "answer")
    assert [(r.number, r.cells["answer"]) for r in read][-2:] == [(50, "48"), (51, "49")]


def test_a_jsonl_line_over_the_row_limit_is_refused_unread():
    data = b'{"prompt": "p", "answer": 1}\n{"prompt": "' + b"x" * 200 + b'"}\n'
    assert _error(data, limits=Limits(rows=10, decoded_bytes=10_000, row_bytes=100)) == [
        "Line 2 is longer than 100 bytes, the limit for one row. Shorten that row."]


def test_a_csv_row_spanning_lines_past_the_row_limit_is_refused():
    data = b'prompt,answer\n"' + b"a long field\n" * 20 + b'",1\n'
    [message] = _error(data, "data.csv", limits=Limits(rows=10, decoded_bytes=10_000,
                                                        row_bytes=100))
    assert message.startswith("The row that starts on line 2 is longer than 100 bytes, the "
                              "limit for one row. Shorten that row. If it should be short, look "
                              "for a quote left open")


def test_rows_past_the_limit_are_refused_as_they_are_read():
    data = b"prompt,answer\n" + b"p,1\n" * 11
    assert _error(data, "data.csv", limits=Limits(rows=10, decoded_bytes=10_000,
                                                  row_bytes=100)) == [
        "The file has more than 10 rows, the limit. Split the dataset into smaller files, or "
        "ask an administrator to raise RLAB_DATASET_MAX_ROWS."]


def test_text_past_the_decoded_limit_is_refused():
    data = b"".join(b'{"prompt": "p", "answer": %d}\n' % n for n in range(10))
    [message] = _error(data, limits=Limits(rows=100, decoded_bytes=100, row_bytes=100))
    assert message.startswith("The file holds more than 100 bytes of data once decoded")


def test_too_many_columns_are_refused():
    data = json.dumps({f"c{n}": n for n in range(parsing.MAX_COLUMNS + 1)}).encode() + b"\n"
    with pytest.raises(DatasetError) as info:
        scan(io.BytesIO(data), filename="data.jsonl", max_bytes=len(data),
             limits=Limits(rows=10, decoded_bytes=len(data), row_bytes=len(data)))
    [message] = info.value.messages
    assert message.startswith(f"The file has more than {parsing.MAX_COLUMNS:,} columns")


def test_a_column_name_too_long_to_show_is_refused():
    assert _error(b'{"prompt": "p", "' + b"k" * 501 + b'": 1}\n') == [
        "Line 1: a key is longer than 500 characters."]


def test_a_parquet_footer_over_the_row_limit_is_refused_with_its_count():
    data = hostile.many_small_rows(1001)
    assert _error(data, "data.parquet") == [
        "The file has 1,001 rows, more than the limit of 1,000. Split the dataset into smaller "
        "files, or ask an administrator to raise RLAB_DATASET_MAX_ROWS."]


def test_a_parquet_footer_that_understates_its_rows_is_refused_by_its_row_groups():
    data = hostile.with_footer(hostile.many_small_rows(1001), {hostile.FILE_NUM_ROWS: 10})
    [message] = _error(data, "data.parquet")
    assert message.startswith("The file has 1,001 rows, more than the limit of 1,000.")


@pytest.mark.parametrize("field", [hostile.COLUMN_TOTAL_UNCOMPRESSED_SIZE,
                                   hostile.ROW_GROUP_TOTAL_BYTE_SIZE,
                                   hostile.COLUMN_NUM_VALUES])
def test_a_parquet_row_group_that_declares_an_absurd_size_is_refused(field):
    data = hostile.with_footer(_parquet({"prompt": ["p"], "answer": ["1"]}), {field: 2**50})
    [message] = _error(data, "data.parquet")
    assert message.startswith("The file declares ")
    assert message.endswith("of data once uncompressed, more than the limit of 39.1 KB. Split "
                            "the dataset into smaller files, or ask an administrator to raise "
                            "RLAB_DATASET_MAX_DECODED_BYTES.")


def test_a_parquet_footer_that_claims_more_data_than_the_file_is_unreadable():
    data = hostile.with_footer(_parquet({"prompt": ["p"], "answer": ["1"]}),
                               {hostile.COLUMN_TOTAL_COMPRESSED_SIZE: 2**40})
    assert _error(data, "data.parquet") == [
        "The Parquet file cannot be read (its footer declares more data than the file holds)."]


def test_one_parquet_text_repeated_in_every_row_is_refused_before_it_is_decoded():
    data = hostile.repeated_text(1000, 1000)
    assert len(data) < LIMIT  # and a million bytes of text once decoded
    [message] = _error(data, "data.parquet")
    assert message.startswith("The file holds more than 39.1 KB of data once decoded")


def test_a_parquet_row_over_the_row_limit_is_refused():
    data = hostile.repeated_text(3, 2000, answer=["1", "2", "3"])
    assert _error(data, "data.parquet", limits=Limits(rows=10, decoded_bytes=100_000,
                                                      row_bytes=1000)) == [
        "Row 1 holds more than 1000 bytes of data once decoded, the limit for one row. Shorten "
        "that row."]


def test_a_parquet_list_that_repeats_a_text_counts_every_copy():
    text = pa.DictionaryArray.from_arrays(pa.array([0] * 300, pa.int32()), pa.array(["x" * 100]))
    tags = pa.ListArray.from_arrays(pa.array([0, 300], pa.int32()), text)
    data = hostile.parquet(pa.table({"prompt": ["p"], "answer": ["1"], "tags": tags}),
                           store_schema=False)
    [message] = _error(data, "data.parquet", limits=Limits(rows=10, decoded_bytes=100_000,
                                                           row_bytes=10_000))
    assert message.startswith("Row 1 holds more than 9.8 KB of data once decoded")


def test_a_parquet_column_of_huge_fixed_size_values_is_refused_by_its_schema():
    data = _parquet({"prompt": ["p"], "answer": ["1"],
                     "blob": pa.array([b"x" * 2000], pa.binary(2000))})
    [message] = _error(data, "data.parquet", limits=Limits(rows=10, decoded_bytes=100_000,
                                                           row_bytes=1000))
    assert message == ("Column 'blob' holds values of 2 KB each, more than the limit of 1000 "
                       "bytes for one row. Keep the columns the dataset needs, and remove the "
                       "others.")


def test_a_preview_reads_only_the_first_rows():
    data = b'{"q": "a", "a": 1}\n{"q": "b", "a": 2}\n{broken\n'
    assert preview(io.BytesIO(data), filename="data.jsonl", max_bytes=LIMIT, limits=LIMITS,
                   columns=["q", "a"], rows=2) == [["a", "1"], ["b", "2"]]


# Mapping
