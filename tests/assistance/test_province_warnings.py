"""省平台预警 (issue 19): the provincial platform's warnings in, their outcomes back."""

from __future__ import annotations

import io
import uuid

import pytest
from openpyxl import Workbook

from backstop.contracts.assistance import PlatformWarningMatched
from backstop.contracts.registry import MemberSnapshot
from backstop.idnumber import check_digit, id_hash
from services.assistance.province_warnings import rematch_warnings
from tests.assistance.conftest import Assistance, make_household
from tests.support import checklist, read_topic

pytestmark = pytest.mark.integration


def id_number(seq: int) -> str:
    first17 = f"44188119750101{seq:03d}"
    return first17 + check_digit(first17)


def warnings_xlsx(rows: list[list[object]]) -> bytes:
    """The platform's export: a title row, merged headers over two rows, a footer."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["广东省防止返贫监测预警平台 后台系统数据监测预警明细"])
    sheet.append(["预警信息", None, None, None, None, "预警对象", None])
    sheet.append(["预警编号", "预警系统", "预警指标", "预警等级", "预警日期", "户编号", "证件号码"])
    sheet.merge_cells("A2:E2")
    sheet.merge_cells("F2:G2")
    for row in rows:
        sheet.append(row)
    sheet.append(["制表人：省平台"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def test_a_warning_opens_a_task_a_second_joins_it_and_the_outcome_comes_back(
    a: Assistance,
) -> None:
    number = id_number(401)
    spouse = MemberSnapshot(
        person_id=str(uuid.uuid4()),
        id_hash=id_hash(number, a.settings.pii_key),
        relation="spouse",
        sex="female",
        birth_date="1975-01-01",  # type: ignore[arg-type]
        labor_capacity="full",
    )
    base = make_household()
    household = await a.household(household_number=f"HN{tag()}", members=[*base.members, spouse])
    hid = household.household_id
    platform = a.headers("province:write", "province:read")
    first = f"GD-{tag()}"
    body = {
        "warnings": [
            {
                "warning_id": first,
                "system": "返贫预警监测系统",
                "item": "住房安全",
                "level": "存在突出问题有返贫致贫风险",
                "warned_on": "2026-11-20",
                "household_number": household.household_number,
            }
        ]
    }
    r = await a.client.post("/v1/province/warnings", json=body, headers=platform)
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["status"] == "opened" and result["household_id"] == hid
    task_id = result["task_id"]
    tasks = (await a.client.get("/v1/tasks", params={"household_id": hid}, headers=a.rw)).json()
    assert [t["id"] for t in tasks["items"]] == [task_id]
    assert tasks["items"][0]["reason"].startswith("省平台预警核实（返贫预警监测系统）：住房安全")
    assert "housing" in tasks["items"][0]["factors"]

    # The same warning again changes nothing; the same id with other content is refused.
    again = (await a.client.post("/v1/province/warnings", json=body, headers=platform)).json()
    assert again["duplicates"] == 1 and again["opened"] == 0
    body["warnings"][0]["item"] = "饮水安全"
    clash = (await a.client.post("/v1/province/warnings", json=body, headers=platform)).json()
    assert clash["conflicts"] == 1

    # A second warning, from the XLSX export and naming a member's ID number, joins the task.
    second = f"GD-{tag()}"
    data = warnings_xlsx(
        [
            [
                second,
                "边缘人口监测管理系统",
                "饮水安全",
                "可能存在问题尚无致贫返贫风险",
                "2026-11-21",
                None,
                number,
            ]
        ]
    )
    r = await a.client.post(
        "/v1/province/warnings/file",
        files={
            "file": (
                "预警.xlsx",
                data,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
        },
        headers=platform,
    )
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["status"] == "joined" and result["task_id"] == task_id
    tasks = (await a.client.get("/v1/tasks", params={"household_id": hid}, headers=a.rw)).json()
    assert len(tasks["items"]) == 1
    assert {"housing", "drinking_water"} <= set(tasks["items"][0]["factors"])

    pending = (await a.client.get(f"/v1/province/warnings/{first}", headers=platform)).json()
    assert pending["status"] == "verifying" and pending["outcome"] is None
    r = await a.client.post(
        f"/v1/tasks/{task_id}/complete",
        json={
            "outcome": "confirmed",
            "verified_by": "镇干部王某",
            "notes": "C级危房",
            **checklist(housing="prominent_issue"),
        },
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    for warning_id in (first, second):
        back = (await a.client.get(f"/v1/province/warnings/{warning_id}", headers=platform)).json()
        assert back["status"] == "verified" and back["task_id"] == task_id
        assert back["outcome"] == "confirmed" and back["verified_by"] == "镇干部王某"
        assert back["verified_on"] is not None
    masked = (await a.client.get(f"/v1/province/warnings/{second}", headers=platform)).json()
    assert masked["person_id_masked"] != number and masked["person_id_masked"].endswith(number[-4:])
    verified = (
        await a.client.get(
            "/v1/province/warnings", params={"status": "verified", "limit": 1000}, headers=platform
        )
    ).json()
    assert {first, second} <= {w["warning_id"] for w in verified["items"]}

    # Risk hears of each matched warning, with no ID number in the event.
    events = await read_topic(
        a.settings,
        "assistance.tasks",
        min_count=2,
        match=lambda e: e.type == "backstop.assistance.warning.matched.v1" and e.subject == hid,
    )
    payloads = [e.payload() for e in events]
    assert all(isinstance(p, PlatformWarningMatched) for p in payloads)
    assert {p.level for p in payloads} == {"prominent_issue", "possible_issue"}  # type: ignore[attr-defined]
    assert all(number not in e.to_bytes().decode() for e in events)


async def test_an_unmatched_warning_is_kept_and_matched_when_the_household_arrives(
    a: Assistance,
) -> None:
    platform = a.headers("province:write", "province:read")
    household_number = f"HN{tag()}"
    warning_id = f"GD-{tag()}"
    r = await a.client.post(
        "/v1/province/warnings",
        json={
            "warnings": [
                {
                    "warning_id": warning_id,
                    "system": "marginal",
                    "item": "income",
                    "level": "possible_issue",
                    "warned_on": "2026-11-02",
                    "household_number": household_number,
                }
            ]
        },
        headers=platform,
    )
    assert r.json()["unmatched"] == 1
    back = (await a.client.get(f"/v1/province/warnings/{warning_id}", headers=platform)).json()
    assert back["status"] == "unmatched" and back["task_id"] is None
    household = await a.household(household_number=household_number)
    assert await rematch_warnings(a.runtime.sessions) >= 1
    back = (await a.client.get(f"/v1/province/warnings/{warning_id}", headers=platform)).json()
    assert back["status"] == "verifying" and back["household_id"] == household.household_id


async def test_bad_warnings_are_refused_by_name(a: Assistance) -> None:
    platform = a.headers("province:write", "province:read")
    warning = {
        "warning_id": f"GD-{tag()}",
        "system": "某某系统",
        "item": "住房安全",
        "level": "存在突出问题",
        "warned_on": "2026-11-02",
        "household_number": "X",
    }
    r = await a.client.post("/v1/province/warnings", json={"warnings": [warning]}, headers=platform)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["loc"][:4] == ["body", "warnings", 0, "system"]
    warning["system"] = "返贫预警监测系统"
    del warning["household_number"]
    r = await a.client.post("/v1/province/warnings", json={"warnings": [warning]}, headers=platform)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "household_number"
    # Below county level, or without the scope: refused.
    town = a.headers("province:write", regions=("441881101",))
    warning["household_number"] = "X"
    r = await a.client.post("/v1/province/warnings", json={"warnings": [warning]}, headers=town)
    assert r.status_code == 403
    r = await a.client.post("/v1/province/warnings", json={"warnings": [warning]}, headers=a.rw)
    assert r.status_code == 403
    # A bad row in the file refuses the file, naming row and column.
    data = warnings_xlsx(
        [[f"GD-{tag()}", "返贫预警监测系统", "住房安全", "存在突出问题", "2026-13-45", "X", None]]
    )
    r = await a.client.post(
        "/v1/province/warnings/file", files={"file": ("w.xlsx", data)}, headers=platform
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "file", 4, "warned_on"]
    # A file that is no sheet: 415, the kernel's problem saying what to send instead.
    r = await a.client.post(
        "/v1/province/warnings/file",
        files={"file": ("w.pdf", b"%PDF-1.7", "application/pdf")},
        headers=platform,
    )
    assert r.status_code == 415, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "unsupported_format"
