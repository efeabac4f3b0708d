"""Reading uploaded dataset files (JSON lines, CSV, Parquet) row by row, and mapping their
columns onto the roles a dataset needs. No Django here.

A file is never read whole: a `Reader` yields its rows one at a time and checks, as it goes, the
limits an upload must keep (webapp.datasets.streaming: its rows, how much its cells decode to,
the size of one row), so memory stays bounded whatever the file. An upload reads its file twice,
keeping no rows: `scan` checks it (the first step: its columns and how many rows), and
`normalise` reads it again with the column mapping, writing the normalised JSON lines as it goes
(the second step); `preview` reads only its first rows.

Every problem a person can fix is a `DatasetError` whose messages say where (line numbers in text
files, row numbers in Parquet) and what to do. Anything else is a bug and may propagate.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import PurePosixPath
from typing import Any, BinaryIO, NamedTuple

from training.spec.prompt_dataset import check_answer, parse_difficulty
from webapp.datasets import streaming
from webapp.datasets.streaming import LimitExceeded, Limits, Unreadable, size_text

JSONL, CSV, PARQUET = "jsonl", "csv", "parquet"
PROMPTS, PREFERENCES = "prompts", "preferences"

# The columns each kind of dataset is normalised to, in the order they are written: those every
# dataset of the kind needs, then those it may have.
ROLES: dict[str, tuple[str, ...]] = {
    PROMPTS: ("prompt", "answer"),
    PREFERENCES: ("prompt", "chosen", "rejected"),
}
OPTIONAL_ROLES: dict[str, tuple[str, ...]] = {
    PROMPTS: ("difficulty",),  # a number, lower = easier, for the curriculum prompt sampler
    PREFERENCES: (),
}
KIND_NAMES = {PROMPTS: "prompt", PREFERENCES: "preference"}
# Column names that probably fill a role, best first; compared without case, "-" or spaces.
ROLE_GUESSES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "question", "input", "problem", "instruction", "query"),
    "answer": ("answer", "solution", "target", "ground_truth", "final_answer", "label"),
    "chosen": ("chosen", "preferred", "accepted", "chosen_response"),
    "rejected": ("rejected", "dispreferred", "rejected_response"),
    "difficulty": ("difficulty", "difficulty_level"),
}
MAX_ERRORS = 10
CSV_DELIMITERS = (",", "\t", ";")
# One row (a line of text, or a Parquet row once decoded): a prompt with its answer or replies.
MAX_ROW_BYTES = 1024 * 1024
# The columns are kept with the upload and offered in the mapping form.
MAX_COLUMNS = 1000
MAX_COLUMN_NAME = 500
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


class DatasetError(ValueError):
    """A file or mapping that cannot become a dataset; `messages` says why, one problem each."""

    def __init__(self, messages: str | list[str], *, more: int = 0):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        if more:
            self.messages.append(f"… and {more} more {'problem' if more == 1 else 'problems'}.")
        super().__init__(" ".join(self.messages))


@dataclass(frozen=True)
class Structured:
    """A cell holding a list, an object or binary data: shown in previews, never used as text."""

    kind: str  # "a list", "an object", "binary data"
    text: str

    def __str__(self) -> str:
        return self.text


Cell = str | Structured | None


class Row(NamedTuple):  # a tuple: a million of them are made in seconds
    number: int  # the line where it starts in a text file; its 1-based position in Parquet
    cells: dict[str, Cell]


@dataclass(frozen=True)
class Summary:
    """What a whole read of a file found: never its rows, only how many."""

    format: str
    columns: tuple[str, ...]
    row_count: int


class ProblemList:
    """Collects the first MAX_ERRORS problems of a file (or of several) and counts the rest;
    `raise_any` raises them as `error(messages, more=...)`."""

    def __init__(self, error: type[Exception] = DatasetError) -> None:
        self.error = error
        self.messages: list[str] = []
        self.more = 0

    def add(self, message: str) -> None:
        if len(self.messages) < MAX_ERRORS:
            self.messages.append(message)
        else:
            self.more += 1

    def raise_any(self) -> None:
        if self.messages:
            raise self.error(self.messages, more=self.more)


def too_large_message(limit: int) -> str:
    return (f"The file is over the limit of {size_text(limit)}. Upload a smaller file, "
            f"or split the dataset.")


def detect_format(filename: str, file: BinaryIO) -> str:
    """Parquet by its magic bytes or name; else JSON lines or CSV by name, then by content (its
    first character other than a byte order mark or white space). The file's position is
    kept."""
    position = file.tell()
    file.seek(0)
    head = file.read(4)
    suffix = PurePosixPath(filename.lower()).suffix
    try:
        if head == b"PAR1" or suffix in (".parquet", ".pq"):
            return PARQUET
        if suffix in (".jsonl", ".ndjson", ".json"):
            return JSONL
        if suffix in (".csv", ".tsv", ".txt"):
            return CSV
        file.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)
        while chunk := file.read(64 * 1024):
            if significant := chunk.lstrip(_WHITESPACE):
                return JSONL if significant[:1] == b"{" else CSV
        return CSV
    finally:
        file.seek(position)


class Reader:
    """One pass over an uploaded file: iterate it for its rows, one at a time.

    Problems with the whole file (too large, not UTF-8, a NUL character, a header without names,
    a damaged Parquet footer, a limit passed) raise DatasetError at once, when it is opened or
    when they are reached. Problems of single rows are collected in `problems` and the row is
    left out, so that one upload lists them all. With `only`, a Parquet file is read for those
    columns alone; a text file is always read whole."""

    def __init__(self, file: BinaryIO, *, filename: str, max_bytes: int, limits: Limits,
                 only: Sequence[str] | None = None):
        self.file = file
        self.limits = limits
        self.problems = ProblemList()
        self._columns: dict[str, None] = {}  # insertion-ordered set
        self._counter = streaming.Counter(limits, streaming.plain_where)
        self._only = only
        size = streaming.file_size(file)
        if size > max_bytes:
            raise DatasetError(too_large_message(max_bytes))
        if not size:
            raise DatasetError("The file is empty.")
        self.format = detect_format(filename, file)
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
        rows = {JSONL: self._jsonl_rows, CSV: self._csv_rows, PARQUET: self._parquet_rows}
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
                                   f"binary file, not JSON lines or CSV.")
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
                              f"{_json_type(value)}.{hint}")
            return None
        cells: dict[str, Cell] = {}
        for key, item in value.items():
            if problem := _name_problem(key):
                self.problems.add(f"Line {number}: a key {problem}.")
                return None
            try:
                cell = _json_cell(item)
            except RecursionError:
                self.problems.add(f"Line {number}: not valid JSON (nested too deeply).")
                return None
            if isinstance(cell, str) and (problem := _text_problem(cell)):
                self.problems.add(f"Line {number}: the value of {key!r} {problem}.")
                return None
            cells[key] = cell
        for key in cells:
            self._add_column(key)
        return cells

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
        problems = ProblemList()
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
        problems = ProblemList()
        seen: set[str] = set()
        for position, name in enumerate(self._parquet.names, start=1):
            if problem := _name_problem(name):
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
                    cell = cells[name] = _parquet_cell(value)
                    if isinstance(cell, str) and (problem := _text_problem(cell)):
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


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    if value.isascii():  # known without reading it: no surrogate
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate escape (\\ud800-\\udfff)"
    return None


def _name_problem(name: str) -> str | None:
    """What makes `name` unusable as a column's name, if anything."""
    if problem := _text_problem(name):
        return problem
    if not name.strip():
        return "is empty"
    if len(name) > MAX_COLUMN_NAME:
        return f"is longer than {MAX_COLUMN_NAME} characters"
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def _json_cell(value: Any) -> Cell:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    kind = "a list" if isinstance(value, list) else "an object"
    return Structured(kind, json.dumps(value, ensure_ascii=False))


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


def _parquet_cell(value: Any) -> Cell:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return Structured("binary data", f"<{len(value)} bytes>")
    if isinstance(value, (list, tuple, dict)):
        kind = "an object" if isinstance(value, dict) else "a list"
        return Structured(kind, json.dumps(value, ensure_ascii=False, default=str))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# Reading a whole file


def scan(file: BinaryIO, *, filename: str, max_bytes: int, limits: Limits,
         kind: str | None = None) -> Summary:
    """Read a whole file once, keeping none of its rows: its format, columns and row count.
    With `kind`, also checks that there are enough columns to map its roles."""
    reader = Reader(file, filename=filename, max_bytes=max_bytes, limits=limits)
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
            columns: Sequence[str], rows: int) -> list[list[Cell]]:
    """The cells of the file's first `rows` rows, under `columns`: only those rows are read."""
    reader = Reader(file, filename=filename, max_bytes=max_bytes, limits=limits)
    return [[row.cells.get(column) for column in columns] for row in islice(reader, rows)]


# Column mapping


def all_roles(kind: str) -> tuple[str, ...]:
    return ROLES[kind] + OPTIONAL_ROLES[kind]


def guess_mapping(columns: Iterable[str], kind: str) -> dict[str, str]:
    """For each role, optional ones included, the first column whose name matches one of its
    guesses, or ""."""
    by_key = {}
    for column in columns:
        by_key.setdefault(column.strip().lower().replace("-", "_").replace(" ", "_"), column)
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for role in all_roles(kind):
        mapping[role] = next((by_key[g] for g in ROLE_GUESSES[role]
                              if g in by_key and by_key[g] not in taken), "")
        taken.add(mapping[role])
    return mapping


def mapped_roles(kind: str, mapping: dict[str, str]) -> tuple[str, ...]:
    """The roles a dataset of `kind` has under `mapping`: the required ones, and the optional
    ones that `mapping` gives a column."""
    return ROLES[kind] + tuple(role for role in OPTIONAL_ROLES[kind] if mapping.get(role))


def normalise(file: BinaryIO, *, filename: str, max_bytes: int, limits: Limits, kind: str,
              mapping: dict[str, str], out: BinaryIO) -> Summary:
    """Read a whole file with `mapping`, writing to `out`, as each row is read, one JSON line
    {role: value} per row, with text for every required role (jsonl_line). DatasetError names
    each row and role that has no text; once there is one, nothing more is written.

    Prompt datasets are scored by comparing numbers, so their answers must be numbers. A mapped
    difficulty is a number, or None where its cell is empty."""
    unmapped = [role for role in ROLES[kind] if not mapping.get(role)]
    if unmapped:
        raise DatasetError(f"Choose a column for: {', '.join(unmapped)}.")
    roles = mapped_roles(kind, mapping)
    used: dict[str, str] = {}
    for role in roles:
        if mapping[role] in used:
            raise DatasetError(f"{used[mapping[role]]} and {role} both use the column "
                               f"{mapping[role]!r}. Choose a different column for each.")
        used[mapping[role]] = role
    reader = Reader(file, filename=filename, max_bytes=max_bytes, limits=limits,
                    only=[mapping[role] for role in roles])
    if reader.format != JSONL:  # its columns are known before its rows are read
        _check_columns_exist(reader.columns, roles, mapping)
    errors = reader.problems
    unit = reader.unit.capitalize()
    count = 0
    for row in reader:
        count += 1
        normalised = _normalise_row(row, kind=kind, roles=roles, mapping=mapping, unit=unit,
                                    errors=errors)
        if not errors.messages:
            out.write(jsonl_line(normalised))
    _check_columns_exist(reader.columns, roles, mapping)
    errors.raise_any()
    if not count:
        raise DatasetError("The file has column names but no rows.")
    return Summary(format=reader.format, columns=reader.columns, row_count=count)


def _check_columns_exist(columns: Sequence[str], roles: Sequence[str],
                         mapping: dict[str, str]) -> None:
    unknown = [f"{role} ({mapping[role]!r})" for role in roles if mapping[role] not in columns]
    if unknown:
        raise DatasetError(f"The file has no such column for: {', '.join(unknown)}.")


def _normalise_row(row: Row, *, kind: str, roles: Sequence[str], mapping: dict[str, str],
                   unit: str, errors: ProblemList) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role in roles:
        column = mapping[role]
        cell = row.cells.get(column)
        if role == "difficulty":
            try:
                out[role] = _difficulty(cell, column)
            except ValueError as exc:
                errors.add(f"{unit} {row.number}: {exc}")
            continue
        if isinstance(cell, Structured):
            errors.add(f"{unit} {row.number}: the {role} column {column!r} holds {cell.kind}, "
                       f"not text.")
        elif cell is None or not cell.strip():
            missing = "has no" if column not in row.cells else "has an empty"
            errors.add(f"{unit} {row.number} {missing} {column!r}, the {role} column.")
        else:
            out[role] = cell
    if kind == PROMPTS and "answer" in out and (problem := check_answer(out["answer"])):
        errors.add(f"{unit} {row.number}: the answer {problem}. Prompt datasets are scored by "
                   f"comparing the last number of a completion with the answer: map a column "
                   f"that holds just the final number.")
    return out


def _difficulty(cell: Cell, column: str) -> float | None:
    """A difficulty cell as a number, None if empty; ValueError saying what to map instead."""
    if isinstance(cell, Structured):
        raise ValueError(f"the difficulty column {column!r} holds {cell.kind}, not a number.")
    try:
        return parse_difficulty(cell)
    except ValueError as exc:
        raise ValueError(f"{exc}. Map a column of numbers as the difficulty (lower = easier, "
                         f"empty cells for unknown), or none.") from None


def jsonl_line(row: dict[str, Any]) -> bytes:
    """One JSON line, UTF-8; line breaks inside values are escaped by JSON."""
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
