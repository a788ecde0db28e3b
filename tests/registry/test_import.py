"""Bulk import of register exports (CSV/XLSX), row-level errors, idempotency."""

from __future__ import annotations

import io
import uuid

import pytest
from openpyxl import Workbook

from services.registry import api
from services.registry.seed import write_export
from tests.registry.conftest import VILLAGE, Registry, person_id_number

pytestmark = pytest.mark.integration

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def upload(
    registry: Registry, content: bytes, name: str, content_type: str
) -> dict[str, object]:
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": (name, content, content_type)},
        headers=registry.writer,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def chinese_csv(number: str) -> tuple[bytes, list[str]]:
    good = [person_id_number(1970), person_id_number(1972), person_id_number(2012)]
    bad = person_id_number(1980)
    bad = bad[:17] + ("0" if bad[17] != "0" else "1")
    rows = [
        "户编号,行政区划代码,户类型,证件号码,姓名,与户主关系,特殊群体,劳动能力,在校生状况,收入年度,工资性收入,转移性收入",
        f"{number}-1,{VILLAGE},边缘易致贫户,{good[0]},黄大山,户主,残疾,弱劳动力或半劳动力,,2025,8000,3000",
        f"{number}-1,{VILLAGE},边缘易致贫户,{good[1]},罗秀英,配偶,,普通劳动力,,,,",
        f"{number}-1,{VILLAGE},边缘易致贫户,{good[2]},黄小明,之子,,无劳动力,小学,,,",
        f"{number}-2,{VILLAGE},脱贫户,{bad},张三,户主,,,,,,",
        f"{number}-3,441881999999,脱贫户,{person_id_number(1960)},李四,户主,,,,,,",
        f"{number}-4,{VILLAGE},脱贫户,{person_id_number(1960)},王五,户主,,,,,,",
        f"{number}-4,{VILLAGE},脱贫户,{person_id_number(1962)},赵六,户主,,,,,,",
    ]
    return ("\n".join(rows) + "\n").encode("utf-8-sig"), good


async def test_csv_with_chinese_headers(registry: Registry) -> None:
    number = uuid.uuid4().hex[:10]
    content, good = chinese_csv(number)
    summary = await upload(registry, content, "register.csv", CSV)
    assert summary["rows"] == 7 and summary["households"] == 4
    assert summary["created"] == 1 and summary["rejected"] == 3
    errors = {(e["row"], e["field"]) for e in summary["errors"]}  # type: ignore[attr-defined]
    assert errors == {(5, "id_number"), (6, "region_code"), (7, "members")}

    located = await registry.client.get(f"/v1/persons/{good[2]}", headers=registry.reader)
    household = (
        await registry.client.get(
            f"/v1/households/{located.json()['household_id']}", headers=registry.reader
        )
    ).json()
    assert household["type"] == "marginal" and household["household_number"] == f"{number}-1"
    head = household["members"][0]
    assert head["special_groups"] == ["disability"] and head["labor_capacity"] == "partial"
    assert (
        household["annual_income"]["total"] == 11000 and household["annual_income"]["wage"] == 8000
    )

    again = await upload(registry, content, "register.csv", CSV)
    assert again["created"] == 0 and again["existing"] == 1 and again["rejected"] == 3


async def test_xlsx_with_english_headers(registry: Registry) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        [
            "household_number",
            "region_code",
            "type",
            "id_number",
            "name",
            "relation",
            "annual_income",
            "year",
        ]
    )
    number = uuid.uuid4().hex[:10]
    sheet.append(
        [number, int(VILLAGE), "alleviated", person_id_number(1950), "Chen", "head", 20000, 2025]
    )
    sheet.append(
        [number, int(VILLAGE), "alleviated", person_id_number(1952), "Li", "spouse", None, None]
    )
    buffer = io.BytesIO()
    book.save(buffer)
    summary = await upload(registry, buffer.getvalue(), "register.xlsx", XLSX)
    assert (summary["created"], summary["rejected"]) == (1, 0), summary


async def test_generated_export_imports_cleanly(registry: Registry) -> None:
    out = io.StringIO()
    rows = write_export(out, 50, seed=uuid.uuid4().int % 10**6)
    summary = await upload(registry, out.getvalue().encode(), "export.csv", CSV)
    assert summary["rows"] == rows
    assert (summary["created"], summary["rejected"]) == (50, 0), summary["errors"]


async def test_wrong_type_missing_columns_and_oversize(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": ("register.json", b"{}", "application/json")},
        headers=registry.writer,
    )
    assert response.status_code == 415
    assert response.json()["errors"][0]["loc"] == ["body", "file"]
    response = await registry.client.post(
        "/v1/households/import",
        content=b"a,b",
        headers={**registry.writer, "content-type": "text/csv"},
    )
    assert response.status_code == 415
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": ("register.csv", "姓名,证件号码\n张三,1\n".encode(), CSV)},
        headers=registry.writer,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "file", "household_number"]
    monkeypatch.setattr(api, "MAX_UPLOAD_BYTES", 100)
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": ("register.csv", b"x" * 1000, CSV)},
        headers=registry.writer,
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_rows_outside_the_token_regions_are_rejected(registry: Registry) -> None:
    number = uuid.uuid4().hex[:10]
    content = (
        "household_number,region_code,id_number,name,relation\n"
        f"{number},{VILLAGE},{person_id_number(1950)},Chen,head\n"
    ).encode()
    response = await registry.client.post(
        "/v1/households/import",
        files={"file": ("r.csv", content, CSV)},
        headers=registry.headers("registry:read", "registry:write", regions=("441881101",)),
    )
    summary = response.json()
    assert (summary["created"], summary["rejected"]) == (0, 1)
    assert summary["errors"][0]["field"] == "region_code"
