"""Reading uploaded dataset files (JSON lines, CSV, Parquet) into rows, and mapping their columns
onto the roles a dataset needs. No Django here.

Every problem a person can fix is a `DatasetError` whose messages say where (line numbers in text
files, row numbers in Parquet) and what to do. Anything else is a bug and may propagate.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from training.prompt_dataset import check_answer, parse_difficulty

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
# A Parquet file is compressed; refuse one whose data would expand past this many times the limit.
PARQUET_EXPANSION_LIMIT = 10


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


@dataclass(frozen=True, slots=True)
class Row:
    number: int  # the line where it starts in a text file; its 1-based position in Parquet
    cells: dict[str, Cell]


@dataclass(frozen=True)
class Table:
    format: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]

    @property
    def unit(self) -> str:
        return "row" if self.format == PARQUET else "line"

    def preview(self, limit: int = 10) -> list[list[Cell]]:
        return [[row.cells.get(column) for column in self.columns] for row in self.rows[:limit]]


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


def size_text(n: int) -> str:
    """
    >>> size_text(512), size_text(2048), size_text(50 * 1024 * 1024), size_text(1536 * 1024)
    ('512 bytes', '2 KB', '50 MB', '1.5 MB')
    """
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{round(n / 1024, 1):g} KB"
    return f"{round(n / 1024 / 1024, 1):g} MB"


def too_large_message(limit: int) -> str:
    return (f"The file is over the limit of {size_text(limit)}. Upload a smaller file, "
            f"or split the dataset.")


def detect_format(filename: str, data: bytes) -> str:
    """Parquet by its magic bytes or name; else JSON lines or CSV by name, then by content."""
    suffix = PurePosixPath(filename.lower()).suffix
    if data.startswith(b"PAR1") or suffix in (".parquet", ".pq"):
        return PARQUET
    if suffix in (".jsonl", ".ndjson", ".json"):
        return JSONL
    if suffix in (".csv", ".tsv", ".txt"):
        return CSV
    return JSONL if data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1] == b"{" else CSV


def parse(data: bytes, *, filename: str, max_bytes: int, kind: str | None = None) -> Table:
    """The columns and rows of an uploaded file. With `kind`, also checks that there are enough
    columns to map its roles."""
    if len(data) > max_bytes:
        raise DatasetError(too_large_message(max_bytes))
    if not data:
        raise DatasetError("The file is empty.")
    fmt = detect_format(filename, data)
    if fmt == PARQUET:
        table = _parse_parquet(data, max_bytes=max_bytes)
    else:
        text = _decode(data)
        if not text.strip():
            raise DatasetError("The file is empty: it holds only blank lines.")
        table = _parse_jsonl(text) if fmt == JSONL else _parse_csv(text, filename)
    if not table.rows:
        raise DatasetError("The file has column names but no rows.")
    if kind is not None:
        roles = ROLES[kind]
        if len(table.columns) < len(roles):
            found = ", ".join(repr(c) for c in table.columns)
            raise DatasetError(
                f"A {KIND_NAMES[kind]} dataset needs {len(roles)} columns "
                f"({', '.join(roles)}), and the "
                f"file has {len(table.columns)}: {found}. Add the missing "
                f"{'column' if len(roles) - len(table.columns) == 1 else 'columns'}.")
    return table


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetError("The file is UTF-16 text. Save it as UTF-8 and upload it again.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            f"The file is not UTF-8: the byte at offset {exc.start} (line {line}) is "
            f"0x{data[exc.start]:02X}, which is not valid there. Save the file as UTF-8 and "
            f"upload it again.") from None
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DatasetError(f"Line {line} contains a NUL character: this looks like a binary "
                           f"file, not JSON lines or CSV.")
    return text


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate escape (\\ud800-\\udfff)"
    return None


# JSON lines


def _parse_jsonl(text: str) -> Table:
    errors = ProblemList()
    columns: dict[str, None] = {}  # insertion-ordered set
    rows: list[Row] = []
    # Split on "\n" only: str.splitlines would also split on characters such as U+2028, which
    # may appear unescaped inside JSON strings.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.add(f"Line {number}: not valid JSON ({exc.msg} at column {exc.colno}).")
            continue
        except (ValueError, RecursionError) as exc:  # an integer with over 4300 digits; nesting
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            errors.add(f"Line {number}: not valid JSON ({reason}).")
            continue
        if not isinstance(value, dict):
            hint = (" A JSON array must be converted to JSON lines: one object per line."
                    if isinstance(value, list) else "")
            errors.add(f"Line {number}: expected a JSON object ({{\"prompt\": ...}}), got "
                       f"{_json_type(value)}.{hint}")
            continue
        cells: dict[str, Cell] = {}
        for key, item in value.items():
            problem = _text_problem(key)
            if problem is None and not key.strip():
                problem = "is empty"
            if problem:
                errors.add(f"Line {number}: a key {problem}.")
                break
            cell = _json_cell(item)
            if isinstance(cell, str) and (problem := _text_problem(cell)):
                errors.add(f"Line {number}: the value of {key!r} {problem}.")
                break
            cells[key] = cell
            columns.setdefault(key)
        else:
            rows.append(Row(number, cells))
    errors.raise_any()
    return Table(format=JSONL, columns=tuple(columns), rows=tuple(rows))


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


# CSV


def _parse_csv(text: str, filename: str) -> Table:
    delimiter = "\t" if filename.lower().endswith(".tsv") else _guess_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    errors = ProblemList()
    header: list[str] | None = None
    rows: list[Row] = []
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            where = f"Line {start}" if reader.line_num <= start else \
                f"Line {start} (to line {reader.line_num})"
            errors.add(f"{where}: malformed CSV ({exc}). A field that contains the delimiter, "
                       f"a quote or a line break must be quoted, with its quotes doubled.")
            if header is None:
                break
            continue
        if not record:
            continue  # a blank line
        if header is None:
            header = [name.strip() for name in record]
            _check_header(header, errors)
            if errors.messages:
                break
            continue
        if len(record) != len(header):
            errors.add(f"Line {start}: {len(record)} "
                       f"{'field' if len(record) == 1 else 'fields'}, but the header has "
                       f"{len(header)}. Quote fields that contain the delimiter "
                       f"({_delimiter_name(delimiter)}).")
            continue
        rows.append(Row(start, {name: value if value != "" else None
                                for name, value in zip(header, record, strict=True)}))
    errors.raise_any()
    return Table(format=CSV, columns=tuple(header or ()), rows=tuple(rows))


def _guess_delimiter(text: str) -> str:
    """The delimiter that occurs most often in the first line (the header); a comma on ties."""
    first = text.lstrip("\r\n").split("\n", 1)[0]
    return max(CSV_DELIMITERS, key=lambda d: (first.count(d), d == ","))


def _delimiter_name(delimiter: str) -> str:
    return {",": "a comma", "\t": "a tab", ";": "a semicolon"}[delimiter]


def _check_header(header: list[str], errors: ProblemList) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            errors.add(f"Column {position} of the header (the first line) has no name. Name "
                       f"every column.")
        elif name in seen:
            errors.add(f"Columns {seen[name]} and {position} of the header are both named "
                       f"{name!r}. Give every column its own name.")
        else:
            seen[name] = position


# Parquet


def _parse_parquet(data: bytes, *, max_bytes: int) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (len(data) >= 12 and data.startswith(b"PAR1") and data.endswith(b"PAR1")):
        raise DatasetError("This is not a Parquet file: it lacks the PAR1 markers at its start "
                           "and end. Upload JSON lines, CSV, or a complete Parquet file.")
    budget = PARQUET_EXPANSION_LIMIT * max_bytes
    too_large = DatasetError(f"The Parquet file's data is more than {size_text(budget)} "
                             f"uncompressed. Split the dataset.")
    # pyarrow raises many kinds of error on damaged input; any of them means "unreadable".
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        metadata = parquet.metadata
        names = list(parquet.schema_arrow.names)
        declared = sum(metadata.row_group(g).column(c).total_uncompressed_size
                       for g in range(metadata.num_row_groups)
                       for c in range(metadata.num_columns))
    except Exception as exc:
        raise DatasetError(f"The Parquet file cannot be read ({_first_line(exc)}).") from None
    if declared > budget:
        raise too_large
    errors = ProblemList()
    _check_parquet_names(names, errors)
    errors.raise_any()
    rows: list[Row] = []
    expanded = 0
    try:
        # Batch by batch, so that data which expands far beyond its compressed size (repeated
        # dictionary values) is refused before it is all in memory.
        for batch in parquet.iter_batches(batch_size=256):
            expanded += batch.nbytes
            if expanded > budget:
                raise too_large
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for offset in range(batch.num_rows):
                number = len(rows) + 1
                cells: dict[str, Cell] = {}
                for name, values in zip(names, columns, strict=True):
                    cell = _parquet_cell(values[offset])
                    if isinstance(cell, str) and (problem := _text_problem(cell)):
                        errors.add(f"Row {number}: the value of {name!r} {problem}.")
                    cells[name] = cell
                rows.append(Row(number, cells))
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"The Parquet file cannot be read ({_first_line(exc)}).") from None
    errors.raise_any()
    return Table(format=PARQUET, columns=tuple(names), rows=tuple(rows))


def _check_parquet_names(names: list[str], errors: ProblemList) -> None:
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        problem = _text_problem(name)
        if problem or not name.strip():
            errors.add(f"Column {position} has no usable name ({problem or 'it is empty'}).")
        elif name in seen:
            errors.add(f"Two columns are named {name!r}. Give every column its own name.")
        seen.add(name)


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


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


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


def normalise(table: Table, *, kind: str, mapping: dict[str, str]) -> list[dict[str, Any]]:
    """One {role: value} dict per row, text for every required role; DatasetError names each row
    and role that has no text.

    Prompt datasets are scored by comparing numbers, so their answers must be numbers. A mapped
    difficulty is a number, or None where its cell is empty."""
    unmapped = [role for role in ROLES[kind] if not mapping.get(role)]
    if unmapped:
        raise DatasetError(f"Choose a column for: {', '.join(unmapped)}.")
    roles = mapped_roles(kind, mapping)
    unknown = [f"{role} ({mapping[role]!r})" for role in roles
               if mapping[role] not in table.columns]
    if unknown:
        raise DatasetError(f"The file has no such column for: {', '.join(unknown)}.")
    used: dict[str, str] = {}
    for role in roles:
        if mapping[role] in used:
            raise DatasetError(f"{used[mapping[role]]} and {role} both use the column "
                               f"{mapping[role]!r}. Choose a different column for each.")
        used[mapping[role]] = role
    errors = ProblemList()
    unit = table.unit.capitalize()
    normalised = []
    for row in table.rows:
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
                errors.add(f"{unit} {row.number}: the {role} column {column!r} holds "
                           f"{cell.kind}, not text.")
            elif cell is None or not cell.strip():
                missing = "has no" if column not in row.cells else "has an empty"
                errors.add(f"{unit} {row.number} {missing} {column!r}, the {role} column.")
            else:
                out[role] = cell
        if kind == PROMPTS and "answer" in out and (problem := check_answer(out["answer"])):
            errors.add(f"{unit} {row.number}: the answer {problem}. Prompt datasets are "
                       f"scored by comparing the last number of a completion with the answer: "
                       f"map a column that holds just the final number.")
        normalised.append(out)
    errors.raise_any()
    return normalised


def _difficulty(cell: Cell, column: str) -> float | None:
    """A difficulty cell as a number, None if empty; ValueError saying what to map instead."""
    if isinstance(cell, Structured):
        raise ValueError(f"the difficulty column {column!r} holds {cell.kind}, not a number.")
    try:
        return parse_difficulty(cell)
    except ValueError as exc:
        raise ValueError(f"{exc}. Map a column of numbers as the difficulty (lower = easier, "
                         f"empty cells for unknown), or none.") from None


def to_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    """JSON lines, UTF-8, one object per row; line breaks inside values are escaped by JSON."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
