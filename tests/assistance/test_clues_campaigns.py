"""Clues (线索) and 回头看 campaigns (issue 8, assistance side)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from backstop.contracts.assistance import ClueOverdue, FindingObserved
from backstop.contracts.registry import MemberSnapshot
from backstop.idnumber import check_digit, id_hash
from services.assistance import clues, domain
from services.assistance.models import utcnow
from services.assistance.tasks import emit_overdue_tasks
from tests.assistance.conftest import Assistance
from tests.support import checklist, read_topic

pytestmark = pytest.mark.integration


def id_number(seq: int) -> str:
    first17 = f"44188119800101{seq:03d}"
    return first17 + check_digit(first17)


async def test_self_declaration_opens_a_task_and_the_filer_reads_the_outcome(
    a: Assistance,
) -> None:
    household = await a.household()
    hid = household.household_id
    filer = a.headers("assistance:read", "assistance:write", regions=(household.region_code,))
    r = await a.client.post(
        "/v1/clues",
        json={
            "source": "self_declaration",
            "household_id": hid,
            "summary": "家中老人住院，医疗费用高",
            "concerns": ["illness"],
        },
        headers=filer,
    )
    assert r.status_code == 201, r.text
    clue = r.json()
    assert clue["task_id"] and clue["status"] == "received"
    tasks = (await a.client.get("/v1/tasks", params={"household_id": hid}, headers=a.rw)).json()
    assert [t["id"] for t in tasks["items"]] == [clue["task_id"]]
    assert tasks["items"][0]["reason"].startswith("线索核实（农户自主申报）")
    # A second clue joins the open task: still one open task per household.
    r = await a.client.post(
        "/v1/clues",
        json={
            "source": "cadre_screening",
            "household_id": hid,
            "summary": "走访发现收入下降",
            "concerns": ["income_drop"],
        },
        headers=a.rw,
    )
    assert r.json()["task_id"] == clue["task_id"]
    r = await a.client.post(
        f"/v1/clues/{clue['id']}/accept", json={"accepted_by": "镇扶贫办"}, headers=a.rw
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    task_id = clue["task_id"]
    assert tasks["items"][0]["assignee"]["type"] == "town"  # a clue is the town's to check
    r = await a.client.post(
        f"/v1/tasks/{task_id}/complete",
        json={
            "outcome": "not_confirmed",
            "verified_by": "镇干部",
            "notes": "已享受医保报销",
            **checklist(),
        },
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    back = (await a.client.get(f"/v1/clues/{clue['id']}", headers=filer)).json()
    assert back["status"] == "closed" and back["outcome"] == "not_confirmed"
    assert back["outcome_notes"] == "已享受医保报销"


async def test_person_clue_matched_by_id_number_or_tracked_when_unknown(a: Assistance) -> None:
    number = id_number(123)
    member = MemberSnapshot(
        person_id="p",
        id_hash=id_hash(number, a.settings.pii_key),
        relation="head",
        sex="male",
        birth_date="1980-01-01",
    )
    household = await a.household(members=[member])
    r = await a.client.post(
        "/v1/clues",
        json={
            "source": "public_report",
            "village_code": household.region_code,
            "person": {"name": "张三", "id_number": number},
            "summary": "房子漏雨",
            "concerns": ["housing"],
            "anonymous": False,
            "reporter": {"name": "邻居", "phone": "13700000000"},
        },
        headers=a.rw,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["household_id"] == household.household_id and body["task_id"]
    assert body["person_id_masked"] == number[:6] + "********" + number[14:]
    assert number not in r.text
    assert body["reporter"] == {"name": "邻居", "phone": "13700000000"}  # county office
    town = a.headers("assistance:read", regions=(household.town_code,))
    seen_by_town = (await a.client.get(f"/v1/clues/{body['id']}", headers=town)).json()
    assert seen_by_town["reporter"] is None

    unknown = await a.client.post(
        "/v1/clues",
        json={
            "source": "public_report",
            "village_code": household.region_code,
            "person": {"name": "李四", "id_number": id_number(456)},
            "summary": "生活困难",
            "anonymous": True,
        },
        headers=a.rw,
    )
    assert unknown.status_code == 201
    u = unknown.json()
    assert u["household_id"] is None and u["task_id"] is None and u["anonymous"]
    await a.client.post(f"/v1/clues/{u['id']}/accept", json={"accepted_by": "镇"}, headers=a.rw)
    r = await a.client.post(
        f"/v1/clues/{u['id']}/outcome",
        json={"outcome": "not_found", "recorded_by": "镇扶贫办", "notes": "查无此人"},
        headers=a.rw,
    )
    assert r.status_code == 200 and r.json()["outcome"] == "not_found"

    for body_, loc in (
        (
            {"source": "public_report", "village_code": "999999999999", "summary": "x"},
            ["body", "village_code"],
        ),
        (
            {
                "source": "public_report",
                "village_code": household.region_code,
                "summary": "x",
                "person": {
                    "name": "x",
                    "id_number": number[:-1] + ("0" if number[-1] != "0" else "1"),
                },
            },
            ["body", "person", "id_number"],
        ),
        (
            {"source": "gossip", "village_code": household.region_code, "summary": "x"},
            ["body", "source"],
        ),
        (
            {
                "source": "self_declaration",
                "village_code": household.region_code,
                "summary": "x",
                "anonymous": True,
            },
            ["body", "anonymous"],
        ),
    ):
        r = await a.client.post("/v1/clues", json=body_, headers=a.rw)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == loc


async def test_unaccepted_clue_is_escalated_once(a: Assistance) -> None:
    household = await a.household()
    r = await a.client.post(
        "/v1/clues",
        json={
            "source": "cadre_screening",
            "household_id": household.household_id,
            "summary": "疑似因灾受损",
        },
        headers=a.rw,
    )
    clue_id = r.json()["id"]
    later = utcnow() + timedelta(days=3)
    counts = await asyncio.gather(
        clues.emit_overdue_clues(a.runtime.sessions, now=later),
        clues.emit_overdue_clues(a.runtime.sessions, now=later),
    )
    assert sum(counts) >= 1
    assert await clues.emit_overdue_clues(a.runtime.sessions, now=later) == 0
    events = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: e.type.endswith("clue.overdue.v1") and e.data["clue_id"] == clue_id,
    )
    assert len(events) == 1 and isinstance(events[0].payload(), ClueOverdue)


async def test_campaign_generates_one_review_task_per_household_even_launched_twice(
    a: Assistance,
) -> None:
    town = "441881166"
    selected = [
        (await a.household(region_code=f"{town}00{i % 3}", town_code=town, type="alleviated"))
        for i in range(6)
    ]
    await a.household(region_code=f"{town}001", town_code=town, type="ordinary")  # not selected
    body = {
        "name": "2026年脱贫户回头看",
        "region_prefix": town,
        "household_types": ["alleviated"],
        "deadline": str(domain.today() + timedelta(days=20)),
        "launched_by": "县扶贫办",
    }
    first, second = await asyncio.gather(
        a.client.post("/v1/campaigns", json=body, headers=a.rw),
        a.client.post("/v1/campaigns", json=body, headers=a.rw),
    )
    assert first.status_code == second.status_code == 201, first.text + second.text
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["generated"] + second.json()["generated"] == 6
    third = await a.client.post("/v1/campaigns", json=body, headers=a.rw)
    assert third.json()["generated"] == 0 and third.json()["tasks"] == 6
    campaign_id = first.json()["id"]
    r = await a.client.get(f"/v1/campaigns/{campaign_id}/progress", headers=a.rw)
    progress = r.json()
    assert (progress["total"], progress["open"], progress["done"]) == (6, 6, 0)
    assert progress["by_town"][0]["town_code"] == town
    assert {x["assignee"] for x in progress["by_assignee"]} == {
        f"{town}000",
        f"{town}001",
        f"{town}002",
    }

    target = selected[0].household_id
    tasks = (
        await a.client.get(
            "/v1/tasks", params={"household_id": target, "kind": "review"}, headers=a.rw
        )
    ).json()["items"]
    assert len(tasks) == 1 and tasks[0]["assignee"]["type"] == "village"
    r = await a.client.post(
        f"/v1/tasks/{tasks[0]['id']}/complete",
        json={
            "outcome": "confirmed",
            "verified_by": "驻村工作队",
            **checklist(compulsory_education="prominent_issue"),
            "schooling": {"child-9": "out_of_school"},
        },
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    [event] = await read_topic(
        a.settings,
        "assistance.findings",
        match=lambda e: e.subject == target and e.data["origin"] == "review",
    )
    finding = event.payload()
    assert isinstance(finding, FindingObserved) and finding.schooling == {
        "child-9": "out_of_school"
    }
    progress = (await a.client.get(f"/v1/campaigns/{campaign_id}/progress", headers=a.rw)).json()
    assert progress["done"] == 1

    empty = {**body, "region_prefix": "441881165"}
    r = await a.client.post("/v1/campaigns", json=empty, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "region_prefix"]
    r = await a.client.post("/v1/campaigns", json={**body, "deadline": "2020-01-01"}, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "deadline"]
    overdue = await emit_overdue_tasks(a.runtime.sessions, on=domain.today() + timedelta(days=40))
    assert overdue >= 5  # the review tasks left open are reminded through notify
