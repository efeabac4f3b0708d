"""Reading text in blocks of whole lines (webapp.datasets.streaming.blocks): wherever a block
ends, the lines and rows read are the same as from the whole file at once."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.datasets import streaming
from webapp.datasets.parsing import MAX_ROW_BYTES, DatasetError, Reader
from webapp.datasets.streaming import LimitExceeded, Limits, blocks


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 8)


def _blocks(data: bytes, *, max_line_bytes: int = 100, lone_cr: bool = False) -> list[bytes]:
    return list(blocks(io.BytesIO(data), max_line_bytes=max_line_bytes, lone_cr=lone_cr))


def test_blocks_end_at_line_ends_and_hold_the_whole_file(small_blocks):
    data = b"one\ntwo\nthree\nfour and more\nfive\n" + b"six\n" * 40
    parts = _blocks(data, max_line_bytes=20)
    assert b"".join(parts) == data
    assert all(part.endswith(b"\n") for part in parts)
    assert max(map(len, parts)) <= 21  # a block, or a longer line and what fits after it


def test_a_crlf_is_never_split_between_blocks(small_blocks):
    # The first read ("p,a\rx,12") ends right after the "\r" of "\r\n" would not fit in it.
    parts = _blocks(b"p,a\rx,1\r\ny,3\n", lone_cr=True)
    assert parts == [b"p,a\r", b"x,1\r\n", b"y,3\n"]


def test_a_lone_carriage_return_ends_a_line_only_for_csv(small_blocks):
    # A block that ends with "\r" stops before it: a "\n" may follow.
    assert _blocks(b"a,1\rb,2\rc,3\r", lone_cr=True) == [b"a,1\r", b"b,2\rc,3\r"]
    with pytest.raises(LimitExceeded, match="Line 1 is longer than 10 bytes"):
        _blocks(b"a,1\rb,2\rc,3\r", max_line_bytes=10)


def test_a_line_longer_than_the_limit_is_refused_unread(small_blocks):
    file = io.BytesIO(b"short\n" + b"x" * 1000 + b"\nafter\n")
    with pytest.raises(LimitExceeded) as raised:
        list(blocks(file, max_line_bytes=20))
    assert str(raised.value) == "Line 2 is longer than 20 bytes, the limit for one row."
    assert raised.value.limit == "row_bytes"
    assert file.tell() <= len(b"short\n") + 21 + 1


def test_a_line_longer_than_a_block_but_within_the_limit_is_read_whole(small_blocks):
    data = b"a line of thirty-one characters\n" + b"b\n" * 20
    parts = _blocks(data, max_line_bytes=40)
    assert parts[0].startswith(b"a line of thirty-one characters\n")
    assert b"".join(parts) == data


LINES = st.lists(st.sampled_from(list('ab,"\'{}:1 é') + ["\r", "\r\n", "\n", '{"a": 1}']),
                 max_size=60).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=LINES, filename=st.sampled_from(["data.csv", "data.jsonl"]))
def test_rows_and_problems_are_the_same_whatever_the_block_size(text, filename):
    data = text.encode()

    def read(block_bytes: int):
        original = streaming.BLOCK_BYTES
        streaming.BLOCK_BYTES = block_bytes
        try:
            reader = Reader(io.BytesIO(data), filename=filename, max_bytes=10_000,
                            limits=Limits(rows=1000, decoded_bytes=10_000,
                                          row_bytes=MAX_ROW_BYTES))
            return list(reader), reader.problems.messages, reader.columns
        except DatasetError as exc:
            return exc.messages
        finally:
            streaming.BLOCK_BYTES = original

    assert read(3) == read(7) == read(1 << 20)
