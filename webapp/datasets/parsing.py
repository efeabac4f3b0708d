"""Reading uploaded dataset files (JSON lines, CSV, Parquet, and plain text for a text corpus)
row by row, and the roles each kind of dataset has. No Django here.

A file is never read whole: a `Reader` yields its rows one at a time and checks, as it goes, the
limits an upload must keep (webapp.datasets.streaming: its rows, how much its cells decode to,
the size of one row), so memory stays bounded whatever the file. An upload reads its file twice,
keeping no rows: `scan` checks it (the first step: its columns and how many rows), and
webapp.datasets.mapping's `normalise` reads it again with the column mapping, writing the
normalised JSON lines as it goes (the second step); `preview` reads only its first rows.

Every problem a person can fix is a `DatasetError` whose messages say where (line numbers in text
files, row numbers in Parquet) and what to do. Anything else is a bug and may propagate.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import PurePosixPath
from typing import BinaryIO, NamedTuple

from training.spec.text_corpus import MIN_PASSAGE_CHARS
from webapp.common.problems import FileProblems, ProblemList
from webapp.datasets.cells import (
    MAX_COLUMN_NAME,
    Cell,
    json_cell,
    json_type,
    name_problem,
    parquet_cell,
    text_problem,
)
from webapp.datasets import streaming
from webapp.datasets.streaming import LimitExceeded, Limits, Unreadable, size_text

JSONL, CSV, PARQUET, TEXT = "jsonl", "csv", "parquet", "text"
# The kinds, named as training.spec.algorithms names what an algorithm trains on.
PROMPTS, PREFERENCES, TEXT_CORPUS = "prompts", "preferences", "text_corpus"

# The columns each kind of dataset is normalised to, in the order they are written: those every
# dataset of the kind needs, then those it may have.
ROLES: dict[str, tuple[str, ...]] = {
    PROMPTS: ("prompt", "answer"),
    PREFERENCES: ("prompt", "chosen", "rejected"),
    TEXT_CORPUS: ("text",),  # a passage of unlabelled text, for mid-training (RMT)
}
OPTIONAL_ROLES: dict[str, tuple[str, ...]] = {
    # difficulty: a number, lower = easier, for the curriculum prompt sampler; source: the
    # distribution a row comes from, text, for DUMP's distribution-level curriculum
    PROMPTS: ("difficulty", "source"),
    PREFERENCES: (),
    TEXT_CORPUS: (),
}
KIND_NAMES = {PROMPTS: "prompt", PREFERENCES: "preference", TEXT_CORPUS: "text-corpus"}
# A plain-text file's one column: its paragraphs.
TEXT_COLUMN = "text"
CSV_DELIMITERS = (",", "\t", ";")
# One row (a line of text, or a Parquet row once decoded): a prompt with its answer or replies.
MAX_ROW_BYTES = 1024 * 1024
# The columns are kept with the upload and offered in the mapping form.
MAX_COLUMNS = 1000
_WHITESPACE = b" \t\n\r\x0b\x0c"

# What to do about each limit of streaming.Limits, and about too many columns.
_LIMIT_ADVICE = {
    "rows": "Split the dataset into smaller files, or ask an administrator to raise "
            "RLAB_DATASET_MAX_ROWS.",
    "decoded_bytes": "Split the dataset into smaller files, or ask an administrator to raise "
                     "RLAB_DATASET_MAX_DECODED_BYTES.",
    "row_bytes": "Shorten that row.",
    "columns": "Keep the columns the dataset needs, and remove the others.",
}


class DatasetError(FileProblems):
    """A file or mapping that cannot become a dataset; `messages` says why, one problem each."""


class Row(NamedTuple):  # a tuple: a million of them are made in seconds
    number: int  # the line where it starts in a text file; its 1-based position in Parquet
    cells: dict[str, Cell]


@dataclass(frozen=True)
class Summary:
    """What a whole read of a file found: never its rows, only how many."""

    format: str
    columns: tuple[str, ...]
    row_count: int


def too_large_message(limit: int) -> str:
    return (f"The file is over the limit of {size_text(limit)}. Upload a smaller file, "
            f"or split the dataset.")


def detect_format(filename: str, file: BinaryIO, *, plain_text: bool = False) -> str:
    """Parquet by its magic bytes or name; else JSON lines or CSV by name, then by content (its
    first character other than a byte order mark or white space). With `plain_text` (a text
    corpus), a .txt or .md name, or content that is no JSON with no other name, is plain text
    rather than CSV. The file's position is kept."""
    position = file.tell()
    file.seek(0)
    head = file.read(4)
    suffix = PurePosixPath(filename.lower()).suffix
    other = TEXT if plain_text else CSV
    try:
        if head == b"PAR1" or suffix in (".parquet", ".pq"):
            return PARQUET
        if suffix in (".jsonl", ".ndjson", ".json"):
            return JSONL
        if plain_text and suffix in (".txt", ".md"):
            return TEXT
        if suffix in (".csv", ".tsv", ".txt"):
            return CSV
        file.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)
        while chunk := file.read(64 * 1024):
            if significant := chunk.lstrip(_WHITESPACE):
                return JSONL if significant[:1] == b"{" else other
        return other
    finally:
        file.seek(position)


class Reader:
    """One pass over an uploaded file: iterate it for its rows, one at a time.

    Problems with the whole file (too large, not UTF-8, a NUL character, a header without names,
    a damaged Parquet footer, a limit passed) raise DatasetError at once, when it is opened or
    when they are reached. Problems of single rows are collected in `problems` and the row is
    left out, so that one upload lists them all. With `only`, a Parquet file is read for those
    columns alone; a text file is always read whole. With `plain_text` (a text corpus), a file
    may be plain text: its rows are its paragraphs (see _plain_rows)."""

    def __init__(self, file: BinaryIO, *, filename: str, max_bytes: int, limits: Limits,
                 only: Sequence[str] | None = None, plain_text: bool = False):
        self.file = file
        self.limits = limits
        self.problems = ProblemList(DatasetError)
        self._columns: dict[str, None] = {}  # insertion-ordered set
        self._counter = streaming.Counter(limits, streaming.plain_where)
        self._only = only
        size = streaming.file_size(file)
        if size > max_bytes:
            raise DatasetError(too_large_message(max_bytes))
        if not size:
            raise DatasetError("The file is empty.")
        self.format = detect_format(filename, file, plain_text=plain_text)
        try:
            if self.format == PARQUET:
                self._open_parquet(size)
            else:
                if file.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                    raise DatasetError("The file is UTF-16 text. Save it as UTF-8 and upload "
                                       "it again.")
                file.seek(0)
                if self.format == CSV:
                    self._open_csv(filename)
                elif self.format == TEXT:
                    self._add_column(TEXT_COLUMN)
        except LimitExceeded as exc:
            raise _limit_error(exc, self.format) from None

    @property
    def columns(self) -> tuple[str, ...]:
        """The file's columns: a JSON lines file's grow as its rows are read."""
        return tuple(self._columns)

    @property
    def unit(self) -> str:
        return "row" if self.format == PARQUET else "line"

    def __iter__(self) -> Iterator[Row]:
        rows = {JSONL: self._jsonl_rows, CSV: self._csv_rows, PARQUET: self._parquet_rows,
                TEXT: self._plain_rows}
        try:
            yield from rows[self.format]()
        except LimitExceeded as exc:
            raise _limit_error(exc, self.format) from None

    def _add_column(self, name: str) -> None:
        if name not in self._columns:
            if len(self._columns) == MAX_COLUMNS:
                raise DatasetError(f"The file has more than {MAX_COLUMNS:,} columns, the limit. "
                                   f"{_LIMIT_ADVICE['columns']}")
            self._columns[name] = None

    # Text

    def _text_blocks(self, *, lone_cr: bool = False) -> Iterator[tuple[int, str]]:
        """The file's text in blocks of whole lines (streaming.blocks), each with the number of
        its first line; DatasetError at the first byte that is not UTF-8 and at the first NUL
        character, which mean it is no text file."""
        offset = newlines = 0
        for raw in streaming.blocks(self.file, max_line_bytes=self.limits.row_bytes,
                                    lone_cr=lone_cr):
            self._counter.add(decoded_bytes=len(raw))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = newlines + raw.count(b"\n", 0, exc.start) + 1
                raise DatasetError(
                    f"The file is not UTF-8: the byte at offset {offset + exc.start} (line "
                    f"{line}) is 0x{raw[exc.start]:02X}, which is not valid there. Save the file "
                    f"as UTF-8 and upload it again.") from None
            if not offset:
                text = text.removeprefix("\ufeff")
            if "\x00" in text:
                line = newlines + text.count("\n", 0, text.index("\x00")) + 1
                raise DatasetError(f"Line {line} contains a NUL character: this looks like a "
                                   f"binary file, not a text file.")
            yield newlines + 1, text
            offset += len(raw)
            newlines += raw.count(b"\n")

    # JSON lines

    def _jsonl_rows(self) -> Iterator[Row]:
        blank = True
        for first, text in self._text_blocks():
            # Lines end at "\n" only: str.splitlines would also split on characters such as
            # U+2028, which may appear unescaped inside JSON strings.
            lines = text.split("\n")
            if not lines[-1]:
                lines.pop()  # what follows the block's last "\n"
            for number, line in enumerate(lines, start=first):
                if len(line) > self.limits.row_bytes:
                    raise streaming.line_too_long(streaming.plain_where, number,
                                                  self.limits.row_bytes)
                line = line.removesuffix("\r")
                if not line.strip():
                    continue
                blank = False
                self._counter.add(rows=1)
                if (cells := self._jsonl_cells(number, line)) is not None:
                    yield Row(number, cells)
        if blank:
            raise DatasetError("The file is empty: it holds only blank lines.")

    def _jsonl_cells(self, number: int, line: str) -> dict[str, Cell] | None:
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            self.problems.add(f"Line {number}: not valid JSON ({exc.msg} at column {exc.colno}).")
            return None
        except (ValueError, RecursionError) as exc:  # an integer with over 4300 digits; nesting
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.problems.add(f"Line {number}: not valid JSON ({reason}).")
            return None
        if not isinstance(value, dict):
            hint = (" A JSON array must be converted to JSON lines: one object per line."
                    if isinstance(value, list) else "")
            self.problems.add(f"Line {number}: expected a JSON object ({{\"prompt\": ...}}), got "
                              f"{json_type(value)}.{hint}")
            return None
        cells: dict[str, Cell] = {}
        for key, item in value.items():
            if problem := name_problem(key):
                self.problems.add(f"Line {number}: a key {problem}.")
                return None
            try:
                cell = json_cell(item)
            except RecursionError:
                self.problems.add(f"Line {number}: not valid JSON (nested too deeply).")
                return None
            if isinstance(cell, str) and (problem := text_problem(cell)):
                self.problems.add(f"Line {number}: the value of {key!r} {problem}.")
                return None
            cells[key] = cell
        for key in cells:
            self._add_column(key)
        return cells

    # Plain text

    def _plain_rows(self) -> Iterator[Row]:
        """A plain-text file's paragraphs, as rows of one column, TEXT_COLUMN: runs of non-blank
        lines, joined by single spaces, numbered by the line where they start. Paragraphs
        shorter than a passage may be (headings, mostly) are left out, as the trainer reads
        plain text (training.spec.text_corpus)."""
        lines: list[str] = []
        start = size = 0
        found, blank = False, True
        for first, text in self._text_blocks():
            block = text.split("\n")
            if not block[-1]:
                block.pop()  # what follows the block's last "\n"
            for number, line in enumerate(block, start=first):
                if line.strip():
                    blank = False
                    start = start or number
                    lines.append(line)
                    size += len(line)
                    if size > self.limits.row_bytes:
                        raise LimitExceeded(
                            f"The paragraph that starts on line {start} is longer than "
                            f"{size_text(self.limits.row_bytes)}, the limit for one row.",
                            limit="row_bytes")
                    continue
                if lines and (row := self._paragraph(start, lines)):
                    found = True
                    yield row
                lines, start, size = [], 0, 0
        if lines and (row := self._paragraph(start, lines)):
            found = True
            yield row
        if blank:
            raise DatasetError("The file is empty: it holds only blank lines.")
        if not found:
            raise DatasetError(f"The file holds no paragraph of at least {MIN_PASSAGE_CHARS} "
                               f"characters: a text corpus needs passages of text to predict.")

    def _paragraph(self, start: int, lines: list[str]) -> Row | None:
        text = " ".join(" ".join(lines).split())
        if len(text) < MIN_PASSAGE_CHARS:
            return None
        self._counter.add(rows=1)
        return Row(start, {TEXT_COLUMN: text})

    # CSV

    def _open_csv(self, filename: str) -> None:
        delimiter = "\t" if filename.lower().endswith(".tsv") else self._guess_delimiter()
        self._delimiter = delimiter
        # Lines as csv reads them, a lone "\r" ending one too (as newline="" splits them),
        # without a Python call per line.
        self._lines = chain.from_iterable(io.StringIO(text, newline="")
                                          for _, text in self._text_blocks(lone_cr=True))
        self._csv = csv.reader(self._lines, delimiter=delimiter, strict=True)
        while True:
            start = self._csv.line_num + 1
            try:
                record = self._next_record(start)
            except StopIteration:
                raise DatasetError("The file is empty: it holds only blank lines.") from None
            except csv.Error as exc:
                raise DatasetError(self._malformed(start, exc)) from None
            if record:
                break
        self._header = [name.strip() for name in record]
        problems = ProblemList(DatasetError)
        _check_header(self._header, problems)
        if problems.messages and not any(self._header) and \
                all(not line.strip() for line in self._lines):
            raise DatasetError("The file is empty: it holds only blank lines.")
        problems.raise_any()
        for name in self._header:
            self._add_column(name)

    def _guess_delimiter(self) -> str:
        """The delimiter that occurs most often in the first line that is not empty (the
        header); a comma on ties."""
        first = ""
        for raw in streaming.blocks(self.file, max_line_bytes=self.limits.row_bytes,
                                    lone_cr=True):
            text = raw.decode("utf-8", "replace")
            first = next((line for line in io.StringIO(text, newline="")
                          if line.strip("\r\n")), "")
            if first:
                break
        self.file.seek(0)
        return max(CSV_DELIMITERS, key=lambda d: (first.count(d), d == ","))

    def _next_record(self, start: int) -> list[str]:
        """The next record, which may span lines inside quotes; LimitExceeded if it is longer
        than a row may be. csv.Error if it is malformed, StopIteration at the end."""
        record = next(self._csv)
        if sum(map(len, record)) > self.limits.row_bytes:
            raise LimitExceeded(f"The row that starts on line {start} is longer than "
                                f"{size_text(self.limits.row_bytes)}, the limit for one row.",
                                limit="row_bytes")
        return record

    def _csv_rows(self) -> Iterator[Row]:
        header = self._header
        while True:
            start = self._csv.line_num + 1
            try:
                record = self._next_record(start)
            except StopIteration:
                return
            except csv.Error as exc:
                self.problems.add(self._malformed(start, exc))
                continue
            if not record:
                continue  # a blank line
            self._counter.add(rows=1)
            if len(record) != len(header):
                self.problems.add(
                    f"Line {start}: {len(record)} {'field' if len(record) == 1 else 'fields'}, "
                    f"but the header has {len(header)}. Quote fields that contain the delimiter "
                    f"({_delimiter_name(self._delimiter)}).")
                continue
            yield Row(start, {name: value if value != "" else None
                              for name, value in zip(header, record, strict=True)})

    def _malformed(self, start: int, exc: csv.Error) -> str:
        where = f"Line {start}" if self._csv.line_num <= start else \
            f"Line {start} (to line {self._csv.line_num})"
        return (f"{where}: malformed CSV ({exc}). A field that contains the delimiter, a quote "
                f"or a line break must be quoted, with its quotes doubled.")

    # Parquet

    def _open_parquet(self, size: int) -> None:
        if not streaming.is_parquet(self.file, size):
            raise DatasetError("This is not a Parquet file: it lacks the PAR1 markers at its "
                               "start and end. Upload JSON lines, CSV, or a complete Parquet "
                               "file.")
        try:
            self._parquet = streaming.ParquetRows(self.file, size=size, limits=self.limits,
                                                  max_columns=MAX_COLUMNS)
        except Unreadable as exc:
            raise DatasetError(f"The Parquet file cannot be read ({exc}).") from None
        problems = ProblemList(DatasetError)
        seen: set[str] = set()
        for position, name in enumerate(self._parquet.names, start=1):
            if problem := name_problem(name):
                reason = problem if problem.startswith("contains") else f"it {problem}"
                problems.add(f"Column {position} has no usable name ({reason}).")
            elif name in seen:
                problems.add(f"Two columns are named {name!r}. Give every column its own name.")
            seen.add(name)
        problems.raise_any()
        for name in self._parquet.names:
            self._add_column(name)

    def _parquet_rows(self) -> Iterator[Row]:
        try:
            for number, values in self._parquet.read(self._only):
                cells: dict[str, Cell] = {}
                for name, value in values.items():
                    cell = cells[name] = parquet_cell(value)
                    if isinstance(cell, str) and (problem := text_problem(cell)):
                        self.problems.add(f"Row {number}: the value of {name!r} {problem}.")
                        break
                else:
                    yield Row(number, cells)
        except Unreadable as exc:
            raise DatasetError(f"The Parquet file cannot be read ({exc}).") from None


def _limit_error(exc: LimitExceeded, format: str) -> DatasetError:
    advice = _LIMIT_ADVICE[exc.limit]
    if format == CSV and exc.limit == "row_bytes":
        advice += (" If it should be short, look for a quote left open before it: it makes the "
                   "lines after it part of one field.")
    return DatasetError(f"{exc} {advice}")


def _delimiter_name(delimiter: str) -> str:
    return {",": "a comma", "\t": "a tab", ";": "a semicolon"}[delimiter]


def _check_header(header: list[str], errors: ProblemList) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            errors.add(f"Column {position} of the header (the first line) has no name. Name "
                       f"every column.")
        elif len(name) > MAX_COLUMN_NAME:
            errors.add(f"The name of column {position} of the header is longer than "
                       f"{MAX_COLUMN_NAME} characters. Shorten it.")
        elif name in seen:
            errors.add(f"Columns {seen[name]} and {position} of the header are both named "
                       f"{name!r}. Give every column its own name.")
        else:
            seen[name] = position


# Reading a whole file


def scan(file: BinaryIO, *, filename: str, max_bytes: int, limits: Limits,
         kind: str | None = None) -> Summary:
    """Read a whole file once, keeping none of its rows: its format, columns and row count.
    With `kind`, also checks that there are enough columns to map its roles."""
    reader = Reader(file, filename=filename, max_bytes=max_bytes, limits=limits,
                    plain_text=kind == TEXT_CORPUS)
    count = sum(1 for _ in reader)
    reader.problems.raise_any()
    if not count:
        raise DatasetError("The file has column names but no rows.")
    columns = reader.columns
    if kind is not None:
        roles = ROLES[kind]
        if len(columns) < len(roles):
            found = ", ".join(repr(c) for c in columns)
            raise DatasetError(
                f"A {KIND_NAMES[kind]} dataset needs {len(roles)} columns "
                f"({', '.join(roles)}), and the file has {len(columns)}: {found}. Add the "
                f"missing {'column' if len(roles) - len(columns) == 1 else 'columns'}.")
    return Summary(format=reader.format, columns=columns, row_count=count)


def preview(file: BinaryIO, *, filename: str, max_bytes: int, limits: Limits,
            columns: Sequence[str], rows: int, kind: str | None = None) -> list[list[Cell]]:
    """The cells of the file's first `rows` rows, under `columns`: only those rows are read."""
    reader = Reader(file, filename=filename, max_bytes=max_bytes, limits=limits,
                    plain_text=kind == TEXT_CORPUS)
    return [[row.cells.get(column) for column in columns] for row in islice(reader, rows)]
