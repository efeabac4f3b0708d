"""Mapping an uploaded file's columns onto the roles its kind of dataset needs: a guess for the
form, and the second read of an upload (`normalise`), which writes one JSON line of {role:
value} per row as it reads. No Django here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from training.spec.prompt_dataset import check_answer, parse_difficulty
from training.spec.text_corpus import MIN_PASSAGE_CHARS
from webapp.common.problems import ProblemList
from webapp.datasets.cells import Cell, Structured
from webapp.datasets.parsing import (
    JSONL,
    OPTIONAL_ROLES,
    PROMPTS,
    ROLES,
    TEXT_CORPUS,
    DatasetError,
    Reader,
    Row,
    Summary,
)
from webapp.datasets.streaming import Limits

# Column names that probably fill a role, best first; compared without case, "-" or spaces.
ROLE_GUESSES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "question", "input", "problem", "instruction", "query"),
    "answer": ("answer", "solution", "target", "ground_truth", "final_answer", "label"),
    "chosen": ("chosen", "preferred", "accepted", "chosen_response"),
    "rejected": ("rejected", "dispreferred", "rejected_response"),
    "difficulty": ("difficulty", "difficulty_level"),
    "source": ("source", "data_source", "distribution", "domain", "subset"),
    "text": ("text", "content", "passage", "body", "document"),
}

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
    difficulty is a number, or None where its cell is empty. A text corpus's passages are long
    enough to predict from (training.spec.text_corpus.MIN_PASSAGE_CHARS)."""
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
                    only=[mapping[role] for role in roles], plain_text=kind == TEXT_CORPUS)
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
    text = out.get("text")
    if kind == TEXT_CORPUS and text is not None and len(text.strip()) < MIN_PASSAGE_CHARS:
        errors.add(f"{unit} {row.number}: the text is shorter than {MIN_PASSAGE_CHARS} "
                   f"characters, too little to predict the next token from. Remove the row, "
                   f"or join it to the next.")
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
