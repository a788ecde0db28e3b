"""Cells of every XLSX and CSV this system writes: text a spreadsheet would run as a
formula is neutralised (OWASP "CSV Injection"), so a village name or a note starting with
`=` stays text in the county office's Excel, WPS or LibreOffice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Excel, WPS and LibreOffice read a cell starting with one of these as a formula (tab and
# CR too: some programs drop them and read on).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, with a leading `'` if it is text that starts like a formula. Numbers,
    dates and booleans pass unchanged (a negative number stays a number)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    """A row for `sheet.append` or `csv.writer.writerow`, every cell through `safe_cell`."""
    return [safe_cell(v) for v in values]
