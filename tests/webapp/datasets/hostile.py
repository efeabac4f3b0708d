"""Hostile files for the upload and import tests, and for `make bench-upload`: Parquet files that
expand far past their size, and Parquet footers that lie, rewritten field by field.

A Parquet footer is a Thrift struct in the compact protocol (parquet.thrift, FileMetaData),
followed by its length and "PAR1". Its integers are variable-length, so a field can take any
value once the footer's length is written again."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

# Paths of Thrift field ids in FileMetaData (parquet.thrift), through lists and structs.
FILE_NUM_ROWS = (3,)
ROW_GROUP_TOTAL_BYTE_SIZE = (4, 2)
ROW_GROUP_NUM_ROWS = (4, 3)
COLUMN_NUM_VALUES = (4, 1, 3, 5)
COLUMN_TOTAL_UNCOMPRESSED_SIZE = (4, 1, 3, 6)
COLUMN_TOTAL_COMPRESSED_SIZE = (4, 1, 3, 7)


def parquet(table: pa.Table, **options) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    return buffer.getvalue()


def many_small_rows(rows: int = 4_000_000) -> bytes:
    """`rows` rows of two int8 columns, all zero: about 30 KB for 4 million rows."""
    zeros = pa.repeat(pa.scalar(0, pa.int8()), rows)
    return parquet(pa.table({"prompt": zeros, "answer": zeros}), compression="zstd",
                   row_group_size=rows)


def many_small_completions(rows: int = 4_000_000) -> bytes:
    """A TRL completions file of `rows` rows (step 0, empty prompt and completion, reward 0): about
    50 KB for 4 million rows."""
    empty = pa.DictionaryArray.from_arrays(pa.repeat(pa.scalar(0, pa.int32()), rows),
                                           pa.array([""]))
    return parquet(pa.table({"step": pa.repeat(pa.scalar(0, pa.int8()), rows), "prompt": empty,
                             "completion": empty,
                             "reward": pa.repeat(pa.scalar(0.0, pa.float32()), rows)}),
                   compression="zstd", row_group_size=rows, store_schema=False)


def repeated_text(rows: int, text_bytes: int, *, columns: tuple[str, ...] = ("prompt",),
                  **more: list) -> bytes:
    """`rows` rows whose `columns` all hold one text of `text_bytes` characters: stored once, in
    a dictionary page that compresses to almost nothing, so the file is a few KB however much
    its rows decode to. No Arrow schema is stored, as a writer other than pyarrow would not."""
    text = pa.array(["x" * text_bytes])
    repeated = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), text)
    table = pa.table({**{name: repeated for name in columns}, **more})
    return parquet(table, compression="zstd", store_schema=False)


def with_footer(data: bytes, changes: dict[tuple[int, ...], int]) -> bytes:
    """`data` with the integer fields of its footer at these paths (every occurrence, in every
    row group and column) set to new values."""
    length = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - length
    footer = data[start:-8]
    found: list[tuple[tuple[int, ...], int, int]] = []
    _struct(footer, 0, (), found)
    for path, begin, end in reversed(found):
        if path in changes:
            footer = footer[:begin] + _varint_bytes(_zigzag(changes[path])) + footer[end:]
    return data[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _struct(data: bytes, pos: int, path: tuple[int, ...], found: list) -> int:
    field = 0
    while (header := data[pos]) != 0:
        pos += 1
        if header >> 4:
            field += header >> 4
        else:
            zigzag, pos = _varint(data, pos)
            field = (zigzag >> 1) ^ -(zigzag & 1)
        pos = _value(data, pos, header & 0x0F, (*path, field), found)
    return pos + 1


def _value(data: bytes, pos: int, kind: int, path: tuple[int, ...], found: list) -> int:
    if kind in (1, 2):  # a boolean field: its value is its type
        return pos
    if kind == 3:
        return pos + 1
    if kind in (4, 5, 6):
        _, end = _varint(data, pos)
        if kind == 6:
            found.append((path, pos, end))
        return end
    if kind == 7:
        return pos + 8
    if kind == 8:
        length, pos = _varint(data, pos)
        return pos + length
    if kind in (9, 10):  # list, set
        header = data[pos]
        pos += 1
        size, element = header >> 4, header & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        for _ in range(size):
            pos = pos + 1 if element in (1, 2) else _value(data, pos, element, path, found)
        return pos
    if kind == 11:  # map
        size, pos = _varint(data, pos)
        if size:
            types = data[pos]
            pos += 1
            for _ in range(size):
                pos = _value(data, pos, types >> 4, path, found)
                pos = _value(data, pos, types & 0x0F, path, found)
        return pos
    if kind == 12:
        return _struct(data, pos, path, found)
    raise ValueError(f"unknown Thrift compact type {kind} at {pos}")
