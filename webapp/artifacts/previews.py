"""What an artifact's page shows of the file: an image (PNG, JPEG, GIF or WebP, told by their
first bytes, never by the name or the type the uploader sent), an MLflow table (`log_table`'s
JSON, `{"columns": [...], "data": [[...], ...]}`) page by page, JSON pretty-printed, text, or
nothing but its size and type. Each reads a bounded number of bytes of the file."""

from __future__ import annotations

import codecs
import json
import math
import mimetypes
from dataclasses import dataclass
from typing import Any

from webapp.artifacts.models import Artifact
from webapp.artifacts.reading import artifact_head

# How much of a text file the page shows.
TEXT_PREVIEW_BYTES = 64 * 1024
# The largest JSON file read whole, to be shown as a table or pretty-printed.
JSON_MAX_BYTES = 8 * 1024 * 1024
# Rows of a table a page shows.
TABLE_PAGE_ROWS = 50
# The most characters of one table cell shown; the rest is in the download.
CELL_MAX_CHARS = 500

# The image formats shown inline, by their first bytes; every other file (SVG and HTML among
# them) is only ever sent as an attachment.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
IMAGE_HEAD_BYTES = 12


def image_type(head: bytes) -> str | None:
    """The image type of a file that starts with `head`, if it is one that pages show.

    >>> image_type(b"\\x89PNG\\r\\n\\x1a\\n..."), image_type(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 ")
    ('image/png', 'image/webp')
    >>> image_type(b"<svg xmlns='http://www.w3.org/2000/svg'>") is None
    True
    """
    for signature, content_type in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def shown_type(artifact: Artifact) -> str:
    """The file's type as the page names it: its name's, else the one it was uploaded with
    (the mlflow client uploads every text file as text/plain, JSON included)."""
    guessed, _ = mimetypes.guess_type(artifact.path, strict=False)
    return guessed or artifact.content_type or "unknown"


@dataclass
class Table:
    """An MLflow table: its column names and rows."""

    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Preview:
    """What the page shows of a file. kind: "image", "table", "json", "text" or "none"; for
    text and JSON, the text and whether it was cut to TEXT_PREVIEW_BYTES; for a table, the
    table; for "none", why there is no preview."""

    kind: str
    text: str = ""
    cut: bool = False
    table: Table | None = None
    image_type: str | None = None
    reason: str = ""
    limit: int = TEXT_PREVIEW_BYTES


def artifact_preview(artifact: Artifact) -> Preview:
    """The preview of the artifact, reading at most JSON_MAX_BYTES of it (a JSON file no
    larger than that) and TEXT_PREVIEW_BYTES of any other."""
    head = artifact_head(artifact, TEXT_PREVIEW_BYTES)
    found_image = image_type(head[:IMAGE_HEAD_BYTES])
    if found_image is not None:
        return Preview(kind="image", image_type=found_image)
    text = _text(head, cut=artifact.size > len(head))
    if text is None:
        return Preview(kind="none", reason="This file is not text or an image that pages show.")
    if text.lstrip().startswith(("{", "[")) and artifact.size <= JSON_MAX_BYTES:
        whole = head if artifact.size <= len(head) else artifact_head(artifact, JSON_MAX_BYTES)
        value = _json(whole)
        if value is not None:
            table = as_table(value)
            if table is not None:
                return Preview(kind="table", table=table)
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
            return Preview(kind="json", text=pretty[:TEXT_PREVIEW_BYTES],
                           cut=len(pretty) > TEXT_PREVIEW_BYTES)
    return Preview(kind="text", text=text, cut=artifact.size > len(head))


def artifact_table(artifact: Artifact) -> Table | None:
    """The artifact as an MLflow table, None when it is not one (or is over JSON_MAX_BYTES)."""
    if artifact.size > JSON_MAX_BYTES:
        return None
    value = _json(artifact_head(artifact, JSON_MAX_BYTES))
    return None if value is None else as_table(value)


def _text(head: bytes, *, cut: bool) -> str | None:
    """`head` decoded as UTF-8 text, None when it is not text (a NUL, or bytes that are not
    UTF-8). A file cut in the middle of a character loses that character's first bytes."""
    if b"\x00" in head:
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        return decoder.decode(head, final=not cut)
    except UnicodeDecodeError:
        return None


def _json(data: bytes) -> Any:
    """The JSON value in `data`, None when it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def as_table(value: Any) -> Table | None:
    """`value` as a table when it has MLflow's table shape: a "columns" list and a "data" list
    of rows as long as it.

    >>> as_table({"columns": ["q", "score"], "data": [["2+2", 1.0]]})
    Table(columns=['q', 'score'], rows=[['2+2', 1.0]])
    >>> as_table({"columns": ["q"], "data": [["a", "b"]]}) is None
    True
    """
    if not isinstance(value, dict) or set(value) - {"columns", "data", "index"}:
        return None
    columns, rows = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not isinstance(rows, list):
        return None
    if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return None
    return Table(columns=[str(column) for column in columns], rows=rows)


@dataclass
class Cell:
    """A table cell as the page shows it: its text; for an image cell (log_table's
    `{"type": "image", "filepath": …, "compressed_filepath": …}`) the image's path among the
    table's owner's artifacts, and that artifact's id once the page has found it."""

    text: str
    image_path: str | None = None
    image_id: int | None = None


@dataclass
class TablePage:
    """One page of a table's rows, sorted by a column or in the file's order."""

    columns: list[str]
    rows: list[list[Cell]]
    number: int
    pages: int
    total: int
    sort: int | None
    descending: bool


def table_page(table: Table, *, page: int, sort: int | None, descending: bool) -> TablePage:
    """Page `page` (from 1; past the end, the last) of the table, sorted by column `sort`
    (numbers before text, empty cells last) when it names one."""
    if sort is not None and not 0 <= sort < len(table.columns):
        sort = None
    rows = table.rows
    if sort is not None:
        present = [row for row in rows if row[sort] is not None]
        missing = [row for row in rows if row[sort] is None]
        rows = sorted(present, key=lambda row: _sort_key(row[sort]), reverse=descending)
        rows += missing
    pages = max(1, math.ceil(len(rows) / TABLE_PAGE_ROWS))
    number = min(max(page, 1), pages)
    start = (number - 1) * TABLE_PAGE_ROWS
    shown = [[Cell(text=cell_text(cell), image_path=cell_image_path(cell)) for cell in row]
             for row in rows[start:start + TABLE_PAGE_ROWS]]
    return TablePage(columns=table.columns, rows=shown, number=number, pages=pages,
                     total=len(rows), sort=sort, descending=descending)


def _sort_key(cell: Any) -> tuple[int, Any]:
    if isinstance(cell, bool | int | float) and not (isinstance(cell, float) and math.isnan(cell)):
        return (0, cell)
    if isinstance(cell, str):
        return (1, cell)
    return (2, json.dumps(cell, sort_keys=True))


def cell_text(cell: Any) -> str:
    """A table cell as the page shows it: text as it is, other values as JSON, cut to
    CELL_MAX_CHARS.

    >>> cell_text("2+2"), cell_text(None), cell_text({"a": [1]}), cell_text(True)
    ('2+2', '', '{"a": [1]}', 'true')
    """
    if cell is None:
        return ""
    text = cell if isinstance(cell, str) else json.dumps(cell, ensure_ascii=False)
    return text if len(text) <= CELL_MAX_CHARS else text[:CELL_MAX_CHARS] + "…"


def cell_image_path(cell: Any) -> str | None:
    """The path of the image an MLflow table cell names (the smaller copy when there is one),
    None for any other cell.

    >>> cell_image_path({"type": "image", "filepath": "table_images/t/1.png",
    ...                  "compressed_filepath": "table_images/t/1.webp"})
    'table_images/t/1.webp'
    >>> cell_image_path({"type": "text", "filepath": "x.png"}) is None
    True
    """
    if not isinstance(cell, dict) or cell.get("type") != "image":
        return None
    for key in ("compressed_filepath", "filepath"):
        if isinstance(cell.get(key), str):
            return cell[key]
    return None
