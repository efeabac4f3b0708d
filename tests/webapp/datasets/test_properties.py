"""Property tests of the upload flow. Whatever arrives, the answer is never a server error (the
test client re-raises any exception a view lets out), and a dataset is saved whole, with every
row of the file, or not at all: no Dataset row and no file left in the store."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.webapp.datasets.conftest import stored_files, upload
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.django_db

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
_names = (f"dataset-{n}" for n in itertools.count())

FILENAMES = st.sampled_from(["data.jsonl", "data.csv", "data.tsv", "data.parquet", "data.json",
                             "upload", "data.txt"])
KINDS = st.sampled_from(["prompts", "preferences"])
# Characters that make up JSON lines and CSV, and some that trouble parsers.
STRUCTURE = st.sampled_from(list('{}[]":,;\t\n\r \\"\'0123456789-.eE') + [
    "a", "b", "prompt", "answer", "chosen", "rejected", "true", "null", "\x00", "é", "\ufeff",
    "\u2028", "\ud7ff", "\\u0000", "\\ud800", '"prompt": ', '"answer": '])


def _attempt(client, project, dataset_dir, data: bytes, *, filename: str, kind: str,
             mapping: dict[str, str] | None = None) -> Dataset | None:
    """Upload `data` and confirm it (with `mapping`, else the page's guesses completed in column
    order); check that the outcome is all or nothing. The saved dataset, or None."""
    rows_before, files_before = Dataset.objects.count(), stored_files(dataset_dir)

    def nothing_saved() -> None:
        assert Dataset.objects.count() == rows_before
        assert stored_files(dataset_dir) == files_before

    name = next(_names)
    step1 = upload(client, project, data, filename=filename, name=name, kind=kind)
    assert step1.status_code in (302, 422)
    if step1.status_code == 422:
        nothing_saved()
        return None
    page = client.get(step1["Location"])
    assert page.status_code == 200
    form = page.context["form"]
    fields = {field: form[field].value() or "" for field in form.fields}
    if mapping is None:
        unused = iter(c for c in page.context["columns"] if c not in fields.values())
        fields.update({role: next(unused) for role in ("prompt", "answer", "chosen", "rejected")
                       if role in fields and not fields[role]})
    else:
        fields.update(mapping)
    response = client.post(step1["Location"], fields)
    assert response.status_code in (302, 422)
    if response.status_code == 422:
        assert client.post(step1["Location"], {"discard": "1"}).status_code == 302
        nothing_saved()
        return None
    dataset = Dataset.objects.get(name=name)
    assert Dataset.objects.count() == rows_before + 1
    assert stored_files(dataset_dir) - files_before <= {dataset.original_path,
                                                        dataset.normalized_path}
    assert dataset.original_path.read_bytes() == data
    normalised = dataset.normalized_path.read_text(encoding="utf-8").split("\n")
    assert normalised[-1] == "" and len(normalised) - 1 == dataset.row_count
    return dataset


@PROPERTY
@given(data=st.binary(max_size=800), filename=FILENAMES, kind=KINDS)
def test_arbitrary_bytes(signed_in, project, dataset_dir, data, filename, kind):
    _attempt(signed_in, project, dataset_dir, data, filename=filename, kind=kind)


@PROPERTY
@given(text=st.lists(STRUCTURE, max_size=120).map("".join), filename=FILENAMES, kind=KINDS)
def test_arbitrary_jsonl_and_csv_like_text(signed_in, project, dataset_dir, text, filename,
                                           kind):
    data = text.encode("utf-8", "surrogatepass")
    _attempt(signed_in, project, dataset_dir, data, filename=filename, kind=kind)


# Files built from valid rows with at most one flaw, so the outcome is known in advance: saved,
# with exactly these rows, if and only if there is no flaw.

ROWS = st.lists(st.tuples(st.text(max_size=30).filter(lambda p: p.strip() and "\x00" not in p),
                          st.integers(-10**6, 10**6)), min_size=1, max_size=8)
FLAWS = st.sampled_from([None, None, None, "empty prompt", "NUL in prompt", "no answer",
                         "answer not a number", "corrupt line"])


@st.composite
def flawed_rows(draw):
    """(rows, flaw): rows as (prompt, answer), answer None for a missing one."""
    rows: list[tuple[str, int | str | None]] = list(draw(ROWS))
    flaw = draw(FLAWS)
    index = draw(st.integers(0, len(rows) - 1))
    prompt, answer = rows[index]
    if flaw == "empty prompt":
        rows[index] = (draw(st.sampled_from(["", " ", "\t\r\n"])), answer)
    elif flaw == "NUL in prompt":
        rows[index] = (prompt + "\x00", answer)
    elif flaw == "no answer":
        rows[index] = (prompt, None)
    elif flaw == "answer not a number":
        rows[index] = (prompt, draw(st.sampled_from(["seven", "1/2", "nan", "inf", " "])))
    return rows, flaw


@st.composite
def jsonl_files(draw):
    rows, flaw = draw(flawed_rows())
    lines = []
    for prompt, answer in rows:
        row = {"prompt": prompt}
        if answer is not None:
            row["answer"] = str(answer) if draw(st.booleans()) else answer
        lines.append(json.dumps(row, ensure_ascii=draw(st.booleans())))
    if flaw == "corrupt line":
        corrupt = draw(st.sampled_from(["{bad", "[1, 2]", '"text"', "null", "7", '{"prompt"']))
        lines.insert(draw(st.integers(0, len(lines))), corrupt)
    for _ in range(draw(st.integers(0, 2))):  # blank lines are skipped, not flaws
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "\t"])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + newline.join(lines) + newline).encode("utf-8"), rows, flaw


def _csv_record(fields, newline: str) -> str:
    # Written with "\r\n" so that a field holding either character is quoted: the writer
    # quotes only the characters of its line terminator, and a bare "\r" ends a line too.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue().removesuffix("\r\n") + newline


@st.composite
def csv_files(draw):
    rows, flaw = draw(flawed_rows())
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    records = [_csv_record(["prompt", "answer"], newline)]
    records += [_csv_record([prompt, "" if answer is None else answer], newline)
                for prompt, answer in rows]
    if flaw == "corrupt line":
        if draw(st.booleans()):
            records.insert(draw(st.integers(1, len(records))), "wrong,number,of" + newline)
        else:
            records.append('"never closed' + newline)  # last: a later quote could close it
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return (bom + "".join(records)).encode("utf-8"), rows, flaw


@PROPERTY
@given(case=st.one_of(jsonl_files().map(lambda c: ("data.jsonl", *c)),
                      csv_files().map(lambda c: ("data.csv", *c))))
def test_files_of_rows_save_exactly_their_rows_or_nothing(signed_in, project, dataset_dir, case):
    filename, data, rows, flaw = case
    dataset = _attempt(signed_in, project, dataset_dir, data, filename=filename, kind="prompts",
                       mapping={"prompt": "prompt", "answer": "answer"})
    assert (dataset is not None) == (flaw is None)
    if dataset is not None:
        assert dataset.row_count == len(rows)
        lines = dataset.normalized_path.read_text(encoding="utf-8").split("\n")
        assert [json.loads(line) for line in lines if line] == [
            {"prompt": prompt, "answer": str(answer)} for prompt, answer in rows]
