"""Bulk import of register exports (CSV/XLSX), row-level errors, idempotency."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import text

from backstop.contracts.registry import TOPIC
from services.registry import api, bulk_import, registering
from services.registry.import_file import HouseholdRows, iter_households, iter_rows
from services.registry.seed import write_export
from tests.registry.conftest import VILLAGE, Registry, person_id_number
from tests.support import read_topic

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


def _rows(number: str, people: list[tuple[str, str]], village: str = VILLAGE) -> list[str]:
    """CSV rows of one household: (ID number, 与户主关系) per person."""
    return [f"{number},{village},{idn},某某,{relation}" for idn, relation in people]


def _import_of(lines: list[str]) -> list[HouseholdRows]:
    text = "\n".join(["户编号,行政区划代码,证件号码,姓名,与户主关系", *lines]) + "\n"
    return list(iter_households(iter_rows(io.BytesIO(text.encode()), "csv")))


async def test_chunks_written_two_at_a_time_report_like_one_by_one(registry: Registry) -> None:
    """Small chunks, so two are written at once: a person in two households of the file
    (in neighbouring chunks) stays with the first; one registered before is a 409; every
    household that goes in has its HouseholdCreated event, and only those."""
    tag = uuid.uuid4().hex[:8]
    shared, known = person_id_number(1971), person_id_number(1972)
    await registry.client.post(
        "/v1/households",
        json={"region_code": VILLAGE, "type": "alleviated",
              "members": [{"id_number": known, "name": "甲", "relation": "head"}]},
        headers=registry.writer,
    )  # fmt: skip
    lines: list[str] = []
    for i in range(9):
        people = [(person_id_number(1950 + i), "户主"), (person_id_number(1980 + i), "配偶")]
        if i == 1:
            people.append((shared, "之子"))
        if i == 2:
            people.append((shared, "之子"))  # the next chunk's, third row
        if i == 4:
            people[1] = (known, "配偶")
        lines += _rows(f"{tag}-{i}", people)
    households = _import_of(lines)
    report = await bulk_import.import_households(
        registry.runtime.sessions,
        households,
        actor="test",
        pii_key=registry.settings.pii_key,
        chunk_size=2,
    )
    assert (report.households, report.created, report.rejected) == (9, 7, 2)
    by_number = {e[1]: e for e in report.errors}
    rows = {h.household_number: h.first_row for h in households}
    assert by_number[f"{tag}-4"] == (
        rows[f"{tag}-4"] + 1, f"{tag}-4", "id_number", "this person is already in another household"
    )  # fmt: skip
    assert by_number[f"{tag}-2"][:3] == (rows[f"{tag}-2"] + 2, f"{tag}-2", "id_number")
    located = await registry.client.get(f"/v1/persons/{shared}", headers=registry.reader)
    first = located.json()["household_id"]
    got = (await registry.client.get(f"/v1/households/{first}", headers=registry.reader)).json()
    assert got["household_number"] == f"{tag}-1"

    numbers = await household_numbers(registry, tag)
    assert numbers == {f"{tag}-{i}" for i in range(9) if i not in (2, 4)}
    events = await read_topic(
        registry.settings,
        TOPIC,
        min_count=7,
        match=lambda e: str(e.data["household"].get("household_number", "")).startswith(tag),
    )
    assert sorted(e.data["household"]["household_number"] for e in events) == sorted(numbers)


async def household_numbers(registry: Registry, tag: str) -> set[str]:
    """The household numbers stored under a test's tag."""
    async with registry.runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT household_number FROM household WHERE household_number LIKE :p"),
            {"p": f"{tag}-%"},
        )
        return set(rows.scalars())


async def test_a_failed_chunk_stops_the_import_and_nothing_after_it_commits(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:8]
    lines: list[str] = []
    for i in range(8):
        lines += _rows(f"{tag}-{i}", [(person_id_number(1960 + i), "户主")])
    insert = bulk_import.insert_households
    calls = 0

    async def failing_second(*args: Any, **kwargs: Any) -> registering.BulkResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            await asyncio.sleep(0.05)  # let the next chunk get going meanwhile
            raise RuntimeError("the database went away")
        return await insert(*args, **kwargs)

    monkeypatch.setattr(bulk_import, "insert_households", failing_second)
    with pytest.raises(RuntimeError, match="went away"):
        await bulk_import.import_households(
            registry.runtime.sessions,
            _import_of(lines),
            actor="test",
            pii_key=registry.settings.pii_key,
            chunk_size=2,
        )
    numbers = await household_numbers(registry, tag)
    assert numbers == {f"{tag}-0", f"{tag}-1"}  # the first chunk only


async def test_a_removed_person_imported_again_keeps_their_person_id(registry: Registry) -> None:
    head, child = person_id_number(1970), person_id_number(2015)
    created = await registry.client.post(
        "/v1/households",
        json={"region_code": VILLAGE, "type": "alleviated",
              "members": [{"id_number": head, "name": "甲", "relation": "head"},
                          {"id_number": child, "name": "乙", "relation": "child"}]},
        headers=registry.writer,
    )  # fmt: skip
    household_id = created.json()["id"]
    located = await registry.client.get(f"/v1/persons/{child}", headers=registry.reader)
    person_id = located.json()["person_id"]
    removed = await registry.client.delete(
        f"/v1/households/{household_id}/members/{person_id}",
        params={"reason": "married out"},
        headers=registry.writer,
    )
    assert removed.status_code == 204
    number = uuid.uuid4().hex[:10]
    content = ("\n".join(["户编号,行政区划代码,证件号码,姓名,与户主关系",
                          *_rows(number, [(person_id_number(1990), "户主"), (child, "配偶")])])
               + "\n").encode()  # fmt: skip
    summary = await upload(registry, content, "r.csv", CSV)
    assert (summary["created"], summary["rejected"]) == (1, 0), summary
    now = (await registry.client.get(f"/v1/persons/{child}", headers=registry.reader)).json()
    assert now["person_id"] == person_id and now["household_id"] != household_id
    events = await read_topic(
        registry.settings, TOPIC, match=lambda e: e.subject == now["household_id"]
    )
    members = events[0].data["household"]["members"]
    assert person_id in {m["person_id"] for m in members}


async def test_errors_are_listed_chunk_by_chunk(registry: Registry) -> None:
    """A chunk's reading errors, then the refusals of its write, whichever write ends first."""
    tag = uuid.uuid4().hex[:8]
    known = [person_id_number(1971), person_id_number(1972)]
    for idn in known:
        await registry.client.post(
            "/v1/households",
            json={"region_code": VILLAGE, "type": "alleviated",
                  "members": [{"id_number": idn, "name": "甲", "relation": "head"}]},
            headers=registry.writer,
        )  # fmt: skip
    bad = person_id_number(1980)
    bad = bad[:17] + ("0" if bad[17] != "0" else "1")

    def one(name: str, idn: str, village: str = VILLAGE) -> list[str]:
        return _rows(f"{tag}-{name}", [(idn, "户主")], village)

    lines = [
        *one("A", person_id_number(1950)),
        *one("B", bad),  # reading, chunk 1
        *one("C", known[0]),  # writing chunk 1
        *one("D", person_id_number(1951), "441881999999"),  # reading, chunk 2
        *one("E", person_id_number(1952)),
        *one("F", known[1]),  # writing chunk 2
        *one("G", bad),  # reading, after the last chunk
    ]
    report = await bulk_import.import_households(
        registry.runtime.sessions,
        _import_of(lines),
        actor="test",
        pii_key=registry.settings.pii_key,
        chunk_size=2,
    )
    assert [e[1] for e in report.errors] == [f"{tag}-{x}" for x in "BCDFG"]
    assert (report.created, report.rejected) == (2, 5)
