"""Reading a file a piece at a time, within limits checked as it is read, so that memory stays
bounded whatever the file holds: text line by line, Parquet batch by batch after its footer has
been checked. Dataset uploads (webapp.datasets.parsing) and rollout imports
(webapp.rollouts.importers) read their files through here. No Django here.

A Parquet file can describe far more data than it stores: 4 million rows of small integers fit in
30 KB, and a dictionary page can repeat one long string in every row. So its footer is checked
before anything is decoded (rows, declared sizes), text columns are read as dictionaries (each
distinct value once), and every batch's decoded size is measured in Arrow before its rows become
Python objects, a slice of rows at a time.

A message names the place of a problem through `where`, a function of a location ("line 12",
"row 3", or "" for the whole file) that returns the sentence's subject: "Line 12",
"completions_00005.parquet, row 3", "The file".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from training.spec.errors import first_line

MiB = 2**20
# Batches of Parquet rows are sized to hold about this much decoded data, and this many cells.
BATCH_BYTES = 4 * MiB
BATCH_CELLS = 64 * 1024
MAX_BATCH_ROWS = 1024
# Rows become Python objects in slices of about this much decoded data (at least one row).
SLICE_BYTES = 1 * MiB

Where = Callable[[str], str]


def plain_where(location: str) -> str:
    """
    >>> plain_where("line 3"), plain_where("")
    ('Line 3', 'The file')
    """
    return location[:1].upper() + location[1:] if location else "The file"


def size_text(n: int) -> str:
    """
    >>> size_text(512), size_text(2048), size_text(50 * 1024 * 1024), size_text(1536 * 1024)
    ('512 bytes', '2 KB', '50 MB', '1.5 MB')
    >>> size_text(3 * 1024**3), size_text(2**50)
    ('3 GB', '1024 TB')
    """
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024:
            return f"{round(n, 1):g} {unit}"
    return f"{round(n / 1024):d} TB"


@dataclass(frozen=True)
class Limits:
    """What one file may hold; each is checked as the file is read."""

    rows: int
    decoded_bytes: int  # text: the bytes of its lines; Parquet: its values' size once decoded
    row_bytes: int  # one line of text, or one Parquet row once decoded


class LimitExceeded(ValueError):
    """A file past one of its `Limits`; `limit` names which ("rows", "decoded_bytes",
    "row_bytes", or "columns": too many, or too wide), so that the caller can add what to do
    about it."""

    def __init__(self, message: str, *, limit: str):
        self.limit = limit
        super().__init__(message)


class Unreadable(ValueError):
    """A damaged Parquet file: the reason, as pyarrow gives it."""


class Counter:
    """Counts rows and decoded bytes as they arrive; LimitExceeded as soon as one passes its
    limit."""

    def __init__(self, limits: Limits, where: Where):
        self.limits = limits
        self.where = where
        self.rows = 0
        self.decoded_bytes = 0

    def add(self, *, rows: int = 0, decoded_bytes: int = 0) -> None:
        self.rows += rows
        self.decoded_bytes += decoded_bytes
        if self.rows > self.limits.rows:
            rows = self.limits.rows
            raise LimitExceeded(f"{self.where('')} has more than {rows:,} "
                                f"{'row' if rows == 1 else 'rows'}, the limit.", limit="rows")
        if self.decoded_bytes > self.limits.decoded_bytes:
            raise LimitExceeded(f"{self.where('')} holds more than "
                                f"{size_text(self.limits.decoded_bytes)} of data once decoded, "
                                f"the limit.", limit="decoded_bytes")


# Text

# Text is read in blocks of whole lines of about this size: a line costs no Python call until
# its caller splits the block.
BLOCK_BYTES = 1 * MiB


def blocks(file: BinaryIO, *, max_line_bytes: int, where: Where = plain_where,
           lone_cr: bool = False) -> Iterator[bytes]:
    """The rest of a seekable binary `file` in blocks of whole lines, of about BLOCK_BYTES (or
    one longer line). A line ends at "\\n" and, with `lone_cr`, also at a "\\r" that no "\\n"
    follows (as csv reads lines). LimitExceeded at a line longer than `max_line_bytes` that does
    not fit in a block, which is never read whole; the lines inside a block are the caller's to
    check (line_too_long)."""
    lines_before = 0
    while block := file.read(BLOCK_BYTES):
        if not _at_end(file):
            cut = _after_last_line_end(block, lone_cr)
            if not cut and len(block) <= max_line_bytes:  # one line, longer than a block
                block += file.read(max_line_bytes + 1 - len(block))
                cut = len(block) if _at_end(file) else _after_last_line_end(block, lone_cr)
            if not cut:
                raise line_too_long(where, lines_before + 1, max_line_bytes)
            file.seek(cut - len(block), 1)
            block = block[:cut]
        lines_before += block.count(b"\n")
        yield block


def line_too_long(where: Where, number: int, max_bytes: int) -> LimitExceeded:
    return LimitExceeded(f"{where(f'line {number}')} is longer than {size_text(max_bytes)}, the "
                         f"limit for one row.", limit="row_bytes")


def _after_last_line_end(block: bytes, lone_cr: bool) -> int:
    """Where the last whole line of `block` ends (0: none does). A "\\r" that ends the block may
    be half of a "\\r\\n", so it ends no line yet."""
    end = len(block) - 1 if block.endswith(b"\r") else len(block)
    cut = block.rfind(b"\n", 0, end) + 1
    return max(cut, block.rfind(b"\r", 0, end) + 1) if lone_cr else cut


def _at_end(file: BinaryIO) -> bool:
    if file.read(1):
        file.seek(-1, 1)
        return False
    return True


# Parquet

# Parquet's physical types, as pyarrow names them, and their size when plain-encoded; a
# BYTE_ARRAY column is read as a dictionary: 4 bytes of index per value.
_PHYSICAL_BYTES = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8,
                   "BYTE_ARRAY": 4}


class ParquetRows:
    """A Parquet file whose footer keeps within `limits`, read as rows of Python values.

    Opening it checks the footer alone: the rows it declares, the sizes its row groups declare
    once uncompressed and once decoded, and the width of fixed-size values. Unreadable for a
    footer pyarrow cannot read or that contradicts the file; LimitExceeded past a limit."""

    def __init__(self, file: BinaryIO, *, size: int, limits: Limits, where: Where = plain_where,
                 max_columns: int):
        import pyarrow.parquet as pq

        self.where = where
        self.limits = limits
        # pyarrow raises many kinds of error on damaged input; any of them means "unreadable".
        try:
            metadata = pq.read_metadata(file)
            schema = metadata.schema
            leaves = [schema.column(i) for i in range(len(schema))]
            self.schema = schema.to_arrow_schema()
            self.names = list(self.schema.names)
            row_groups = [metadata.row_group(g) for g in range(metadata.num_row_groups)]
            chunks = [group.column(c) for group in row_groups for c in range(group.num_columns)]
        except Exception as exc:
            raise Unreadable(first_line(exc, limit=200)) from None
        if max(len(self.names), len(leaves)) > max_columns:
            raise LimitExceeded(f"{where('')} has {max(len(self.names), len(leaves)):,} "
                                f"columns, more than the {max_columns:,} a file may have.",
                                limit="columns")
        rows = max(metadata.num_rows, sum(group.num_rows for group in row_groups))
        if rows > limits.rows:
            raise LimitExceeded(f"{where('')} has {rows:,} rows, more than the limit of "
                                f"{limits.rows:,}.", limit="rows")
        if min((group.num_rows for group in row_groups), default=0) < 0 or any(
                min(chunk.num_values, chunk.total_compressed_size,
                    chunk.total_uncompressed_size) < 0 for chunk in chunks):
            raise Unreadable("its footer declares a negative size")
        # Lies here could make pyarrow allocate what the file does not hold.
        if sum(chunk.total_compressed_size for chunk in chunks) > size:
            raise Unreadable("its footer declares more data than the file holds")
        for leaf in leaves:
            if leaf.physical_type == "FIXED_LEN_BYTE_ARRAY" and leaf.length > limits.row_bytes:
                raise LimitExceeded(f"{where(f'column {leaf.path!r}')} holds values of "
                                    f"{size_text(leaf.length)} each, more than the limit of "
                                    f"{size_text(limits.row_bytes)} for one row.",
                                    limit="columns")
        # What each row group's data takes once uncompressed, and at least what it takes once
        # decoded (each value of each leaf at its width): refused past the limit before a page
        # is read.
        widths = [_PHYSICAL_BYTES.get(leaf.physical_type, max(leaf.length, 1))
                  for leaf in leaves]
        declared = [max(group.total_byte_size,
                        sum(group.column(c).total_uncompressed_size
                            for c in range(group.num_columns)),
                        sum(group.column(c).num_values * widths[c]
                            for c in range(group.num_columns)))
                    for group in row_groups]
        if sum(declared) > limits.decoded_bytes:
            raise LimitExceeded(f"{where('')} declares {size_text(sum(declared))} of data once "
                                f"uncompressed, more than the limit of "
                                f"{size_text(limits.decoded_bytes)}.", limit="decoded_bytes")
        self.rows = rows
        self._file = file
        self._metadata = metadata
        # Each distinct text once, however many rows repeat it (decimals are stored as bytes
        # too, but decode to numbers of a fixed width).
        self._dictionaries = [leaf.path for leaf in leaves if leaf.physical_type == "BYTE_ARRAY"
                              and leaf.logical_type.type != "DECIMAL"]
        per_row = max((size // max(group.num_rows, 1)
                       for size, group in zip(declared, row_groups, strict=True)), default=1)
        self._batch_rows = max(1, min(MAX_BATCH_ROWS, BATCH_CELLS // max(len(leaves), 1),
                                      BATCH_BYTES // max(per_row, 1)))

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return self.read()

    def read(self, columns: Sequence[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row number from 1, {column: value}) for each row, of `columns` or all; a row's values
        as pyarrow gives them in Python. LimitExceeded, at the batch that passes a limit, before
        its rows are converted; Unreadable where pyarrow cannot decode the data."""
        import pyarrow.parquet as pq

        counter = Counter(self.limits, self.where)
        number = 0
        try:
            self._file.seek(0)
            parquet = pq.ParquetFile(self._file, metadata=self._metadata,
                                     read_dictionary=self._dictionaries)
            batches = parquet.iter_batches(batch_size=self._batch_rows, columns=columns,
                                           use_threads=False)
            for batch in batches:
                sizes = np.zeros(batch.num_rows, dtype=np.int64)
                for column in batch.columns:
                    sizes += value_sizes(column)
                over = np.flatnonzero(sizes > self.limits.row_bytes)
                if over.size:
                    raise LimitExceeded(
                        f"{self.where(f'row {number + int(over[0]) + 1}')} holds more than "
                        f"{size_text(self.limits.row_bytes)} of data once decoded, the limit "
                        f"for one row.", limit="row_bytes")
                counter.add(rows=batch.num_rows, decoded_bytes=int(sizes.sum()))
                names = batch.schema.names
                for start, stop in slices(sizes, SLICE_BYTES):
                    part = batch.slice(start, stop - start)
                    values = [part.column(i).to_pylist() for i in range(part.num_columns)]
                    for offset in range(stop - start):
                        number += 1
                        yield number, {name: column[offset]
                                       for name, column in zip(names, values, strict=True)}
        except LimitExceeded:
            raise
        except Exception as exc:
            raise Unreadable(first_line(exc, limit=200)) from None


def value_sizes(array: Any) -> np.ndarray:
    """The bytes each value of a pyarrow array takes once decoded: text and binary their length,
    fixed-width values their width, lists, maps and structs the sum of their parts, a null 0.

    >>> import pyarrow as pa
    >>> value_sizes(pa.array(["ab", None, "é"])).tolist()
    [2, 0, 2]
    >>> value_sizes(pa.array([[1, 2], None, []], pa.list_(pa.int8()))).tolist()
    [2, 0, 0]
    >>> value_sizes(pa.array(["xyz"] * 3).dictionary_encode().slice(1)).tolist()
    [3, 3]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if isinstance(array, pa.ChunkedArray):
        parts = [value_sizes(chunk) for chunk in array.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if isinstance(array, pa.ExtensionArray):
        return value_sizes(array.storage)
    nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_dictionary(kind):
        sizes = value_sizes(array.dictionary)[
            pc.fill_null(array.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)]
    elif (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
          or pa.types.is_large_binary(kind) or pa.types.is_string_view(kind)
          or pa.types.is_binary_view(kind)):
        sizes = pc.fill_null(pc.binary_length(array), 0).to_numpy(zero_copy_only=False)
    elif pa.types.is_map(kind):
        return value_sizes(array.cast(pa.list_(pa.struct([kind.key_field, kind.item_field]))))
    elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)
          or pa.types.is_fixed_size_list(kind)):
        sizes = np.bincount(pc.list_parent_indices(array).to_numpy(zero_copy_only=False),
                            weights=value_sizes(pc.list_flatten(array)),
                            minlength=len(array))
    elif pa.types.is_struct(kind):
        sizes = np.zeros(len(array), dtype=np.int64)
        for field in array.flatten():
            sizes += value_sizes(field)
    elif pa.types.is_null(kind):
        sizes = np.zeros(len(array), dtype=np.int64)
    else:
        sizes = np.full(len(array), max(kind.bit_width // 8, 1), dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    sizes[nulls] = 0
    return sizes


def slices(sizes: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive [start, stop) ranges of `sizes`, each summing to at most `budget`, or holding
    a single item.

    >>> list(slices(np.array([3, 3, 3, 9, 1]), 6))
    [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    total = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        before = int(total[start - 1]) if start else 0
        stop = max(int(np.searchsorted(total, before + budget, side="right")), start + 1)
        yield start, stop
        start = stop


def is_parquet(file: BinaryIO, size: int) -> bool:
    """Whether `file` starts and ends with Parquet's PAR1 markers (its position is kept)."""
    position = file.tell()
    try:
        file.seek(0)
        head = file.read(4)
        file.seek(max(size - 4, 0))
        tail = file.read(4)
    finally:
        file.seek(position)
    return size >= 12 and head == tail == b"PAR1"


def file_size(file: BinaryIO) -> int:
    """The size of a seekable file; it is left at its start."""
    size = file.seek(0, 2)
    file.seek(0)
    return size
