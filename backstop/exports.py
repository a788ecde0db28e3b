"""Cells of every XLSX and CSV this system writes: text a spreadsheet would run as a
formula is neutralised (OWASP "CSV Injection"), so a village name or a note starting with
`=` stays text in the county office's Excel, WPS or LibreOffice. And the one way a
workbook leaves as a download (`xlsx_response`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

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


def attachment(filename: str, *, ascii_name: str | None = None) -> str:
    """A Content-Disposition for a download named `filename` (RFC 6266): `filename*` in
    UTF-8 for the Chinese name, and an ASCII `filename` for old clients (`ascii_name`,
    or `filename` itself), with anything outside letters, digits, `.`, `-` and `_`
    replaced, so no quote, semicolon or line break can reach the header."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", ascii_name or filename).lstrip(".") or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def xlsx_response(data: bytes, *, name: str, ascii_name: str) -> Response:
    """A workbook as an attachment named `name`.xlsx (`ascii_name`.xlsx for clients that
    cannot read the UTF-8 name)."""
    return Response(
        data,
        media_type=XLSX,
        headers={
            "Content-Disposition": attachment(f"{name}.xlsx", ascii_name=f"{ascii_name}.xlsx")
        },
    )
