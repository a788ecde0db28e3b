"""Reading uploads: encodings, delimiters, headers, blank/short/long lines, XLSX."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from openpyxl import Workbook

from backstop.sheets import SheetProblem, detect_encoding
from services.datasync.parsing import Row, json_rows, open_file


def csv_rows(file: io.BytesIO, source: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(raw, row) for raw, row, _ in open_file(file, "csv", source)[1]]


def xlsx_rows(file: io.BytesIO, source: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(raw, row) for raw, row, _ in open_file(file, "xlsx", source)[1]]


def two(rows: Iterator[Row | None]) -> list[tuple[dict[str, Any], dict[str, Any]] | None]:
    return [None if r is None else (r[0], r[1]) for r in rows]


HEADER = "记录编号,身份证号,姓名,结算日期,医疗总费用,基本医保支付,医疗救助,个人自付"


def test_encodings() -> None:
    text = HEADER + "\nR1,44188119800517001X,张三,2026-10-01,1,0,0,1\n"
    assert detect_encoding(io.BytesIO(text.encode("utf-8"))) == "utf-8"
    assert detect_encoding(io.BytesIO(b"\xef\xbb\xbf" + text.encode())) == "utf-8-sig"
    assert detect_encoding(io.BytesIO(text.encode("gbk"))) == "gb18030"
    for encoded in (text.encode("gbk"), b"\xef\xbb\xbf" + text.encode()):
        [(raw, row)] = list(csv_rows(io.BytesIO(encoded), "medical"))
        assert raw["姓名"] == "张三" and row["name"] == "张三" and row["record_id"] == "R1"


def test_tabs_blank_short_and_long_lines() -> None:
    text = (
        "\n"
        + HEADER.replace(",", "\t")
        + "\tnote\n"
        + "R1\t44188119800517001X\t张三\t2026-10-01\t1\t0\t0\t1\tok\textra\n"
        + "\t\t\t\t\t\t\t\t\n"
        + "R2\t44188119800517001X\n"
    )
    rows = list(csv_rows(io.BytesIO(text.encode()), "medical"))
    assert len(rows) == 2
    assert rows[0][0]["note"] == "ok" and rows[0][0]["column_10"] == "extra"
    assert rows[1][1]["record_id"] == "R2" and rows[1][1]["total_cost"] is None


def test_missing_column_and_empty_file() -> None:
    with pytest.raises(SheetProblem) as info:
        list(csv_rows(io.BytesIO(b"record_id,name\n1,x\n"), "medical"))
    assert info.value.code == "header_not_found"
    assert "id_number" in info.value.details["candidates"][0]["missing_fields"]
    with pytest.raises(SheetProblem):
        list(csv_rows(io.BytesIO(b"\n\n"), "medical"))
    with pytest.raises(SheetProblem):
        list(xlsx_rows(io.BytesIO(b"not a zip"), "medical"))


def test_xlsx_values_keep_their_types() -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        [
            "学生姓名",
            "证件号码",
            "记录编号",
            "学段",
            "学期",
            "学杂费",
            "资助金额",
            "个人自付",
            "在读",
        ]
    )
    sheet.append(["李四", "441881201203010025", 1001, "初中", "2026秋", 2000, 1500, 500, "是"])
    out = io.BytesIO()
    book.save(out)
    [(raw, row)] = list(xlsx_rows(io.BytesIO(out.getvalue()), "education"))
    assert row["record_id"] == 1001 and row["fees"] == 2000 and raw["学生姓名"] == "李四"


def test_json_records_with_chinese_keys() -> None:
    records = [{"身份证号": "x", "record_id": "R1", "结算日期": datetime(2026, 10, 1)}, 5]
    rows = two(json_rows(records, "medical"))
    assert rows[0] is not None and rows[0][1]["id_number"] == "x"
    assert rows[0][1]["settled_on"] == datetime(2026, 10, 1)
    assert rows[1] is None


def test_rows_under_the_field_names_are_their_raw_records() -> None:
    header = "record_id,id_number,name,settled_on,total_cost,insurance_paid,assistance_paid,out_of_pocket"
    line = "R1,x,张三,2026-10-01,1,0,0,1"
    text = f"{header}\n{line}\n{line},extra\n"
    full, long = list(csv_rows(io.BytesIO(text.encode()), "medical"))
    assert full[0] == full[1] == dict(zip(header.split(","), line.split(","), strict=True))
    assert long[0]["column_9"] == "extra" and long[1] == full[1]
    record = {"record_id": "R1", "id_number": "x"}
    [(raw, row)] = [r for r in two(json_rows([record], "medical")) if r is not None]
    assert raw is record and row == record
    [(raw, row)] = [
        r for r in two(json_rows([{**record, "note": "n"}], "medical")) if r is not None
    ]
    assert row == record and raw["note"] == "n"  # a key naming no field stays in raw only
