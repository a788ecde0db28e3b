"""backstop.sheets as plain functions: values as Excel leaves them, finding the header,
totals rows, formats and the zip-bomb guard (no infrastructure)."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from backstop.sheets import (
    CellProblem,
    Limits,
    SheetProblem,
    check_xlsx,
    excel_amount,
    excel_date,
    excel_id_text,
    file_format,
    find_header,
    flatten_header,
    match_columns,
    open_table,
    row_kind,
)

KNOWN = {"姓名": "name", "身份证号": "id_number", "统筹基金支付": "pooled", "医疗总费用": "total"}


def match(text: str) -> str | None:
    return KNOWN.get(text)


def missing(found: set[str]) -> list[str]:
    return [f for f in ("name", "id_number") if f not in found]


def test_amounts() -> None:
    assert excel_amount("1,234.56") == 1234.56
    assert excel_amount("¥1234") == excel_amount("￥1,234") == excel_amount("1234元") == 1234
    assert excel_amount("１２３４．５") == 1234.5
    assert excel_amount(12) == 12.0
    for bad in ("abc", "nan", "inf", True):
        with pytest.raises(CellProblem):
            excel_amount(bad)


def test_dates() -> None:
    day = date(2026, 11, 3)
    for value in (
        "2026-11-03",
        "2026/11/3",
        "2026.11.3",
        "2026年11月3日",
        "20261103",
        20261103,
        "2026-11-03 14:22:00",
        datetime(2026, 11, 3, 9, 30),
        day,
        46329,
        46329.75,
        "46329",
        "２０２６年１１月３日",
    ):
        assert excel_date(value) == day, value
    with pytest.raises(CellProblem) as info:
        excel_date("2026-02-30")
    assert info.value.code == "not_a_real_date"
    with pytest.raises(CellProblem):
        excel_date("next tuesday")


def test_id_numbers() -> None:
    assert excel_id_text(" '44188119800517001x ") == "44188119800517001X"
    assert excel_id_text("441881 1980 0517 001X") == "44188119800517001X"
    assert excel_id_text("４４１８８１１９８００５１７００１Ｘ") == "44188119800517001X"
    for lost in ("4.41881E+17", 4.41881198005e17):
        with pytest.raises(CellProblem) as info:
            excel_id_text(lost)
        assert info.value.code == "id_number_lost_digits"
        assert "文本" in info.value.message_zh


def test_totals_footers_and_blank_rows() -> None:
    assert row_kind(["合 计", None, 100]) == row_kind([None, "", "制表人：张三"]) == 2
    assert row_kind([None, "  ", ""]) == 1
    assert row_kind(["1", "张三"]) == row_kind([1, "合计"]) == row_kind(["单丽", "x"]) == 0


def test_layered_headers_flatten_to_the_most_specific_part() -> None:
    lines: list[list[object]] = [
        ["序号", "姓名", "身份证号", "医疗费用", None, None],
        [None, None, None, "医疗总费用", "基金支付", None],
        [None, None, None, None, "统筹基金支付", "大病"],
    ]
    parts = flatten_header(lines)
    assert parts[4] == ["医疗费用", "基金支付", "统筹基金支付"]
    assert parts[5] == ["医疗费用", "基金支付", "大病"]
    headers, fields = match_columns(parts, match)
    assert headers[4] == "医疗费用/基金支付/统筹基金支付"
    assert fields == {1: "name", 2: "id_number", 3: "total", 4: "pooled"}


def test_the_header_is_found_below_titles_and_notes() -> None:
    lines: list[list[object]] = [
        ["XX市医疗保障局明细表"],
        ["填报单位：XX", None, "制表日期：2026年12月2日"],
        ["序号", "姓名", "身份证号"],
        ["1", "张三", "x"],
    ]
    best, _ = find_header(lines, 1, match, missing)
    assert (best.row, best.depth, best.missing) == (3, 1, [])
    unknown, ranked = find_header([["标题"], ["甲", "乙", "丙"]], 1, match, missing)
    assert unknown.row == 2 and unknown.missing == ["name", "id_number"]
    assert ranked[0].describe()["unmatched_headers"] == ["甲", "乙", "丙"]


def test_formats() -> None:
    assert file_format(b"PK\x03\x04", "a.xlsx", None) == "xlsx"
    assert file_format(b"\xd0\xcf\x11\xe0", "a.xls", None) == "xls"
    assert file_format(b"a,b", "a.csv", None) == "csv"
    for name in ("a.et", "a.ods"):
        with pytest.raises(SheetProblem) as info:
            file_format(b"PK\x03\x04", name, None)
        assert info.value.status == 415
    with pytest.raises(SheetProblem):
        file_format(b"%PDF", "a.pdf", "application/pdf")


def test_a_zip_bomb_is_refused_from_its_directory() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/sharedStrings.xml", b"<si><t>A</t></si>" * 300_000)  # 5 MB
    with pytest.raises(SheetProblem) as info:
        check_xlsx(io.BytesIO(out.getvalue()), Limits(max_ratio=100))
    assert info.value.status == 413 and info.value.code == "workbook_too_large"
    with pytest.raises(SheetProblem):
        check_xlsx(io.BytesIO(out.getvalue()), Limits(max_shared_strings_bytes=1 << 20))
    check_xlsx(io.BytesIO(out.getvalue()), Limits(max_ratio=10_000))  # within the limits


def test_an_xlsx_read_with_gaps_dates_and_shared_strings() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet["A1"] = "标题"
    sheet["A3"], sheet["B3"], sheet["C3"] = "姓名", "身份证号", "医疗总费用"
    sheet["A4"], sheet["B4"], sheet["C4"], sheet["E4"] = "张三", "x", 12.5, datetime(2026, 1, 2)
    sheet["A6"] = "合计"
    out = io.BytesIO()
    book.save(out)
    table = open_table(io.BytesIO(out.getvalue()), "xlsx", match, missing)
    assert (table.sheet, table.header.row) == ("Sheet", 3)
    rows = list(table.rows)
    assert rows == [(4, ["张三", "x", 12.5, None, datetime(2026, 1, 2)])]
    assert table.skipped == 1
