"""CSV cells that a spreadsheet opens as text, never as a formula: every CSV export writes its
cells through `csv_cell` (the text in them is user data: metric names, prompts, run names)."""

from __future__ import annotations

from typing import Any

# What starts a formula in Excel, LibreOffice or Google Sheets; they skip leading whitespace
# before it. A cell starting with a tab or carriage return is quoted too (OWASP's advice).
_FORMULA_START = ("=", "+", "-", "@")
_CONTROL_START = ("\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value for csv.writer: "" for None, text that would start a formula behind a quote,
    anything else as it is.

    >>> csv_cell("=HYPERLINK(1)"), csv_cell(" \\t=1+1"), csv_cell("\\r@SUM(A1)")
    ("'=HYPERLINK(1)", "' \\t=1+1", "'\\r@SUM(A1)")
    >>> csv_cell("reward/mean"), csv_cell(-0.5), csv_cell(None)
    ('reward/mean', -0.5, '')
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    if value.startswith(_CONTROL_START) or value.lstrip().startswith(_FORMULA_START):
        return "'" + value
    return value
