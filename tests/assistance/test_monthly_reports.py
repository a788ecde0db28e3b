"""月汇报 through the assistance API: a town's report of last month from logged visits, its
region isolation and errors, the town's sign-off stored once, and the late-report event."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from backstop.contracts.registry import ContactSnapshot
from backstop.requests import Period
from services.assistance import domain, monthly_reports
from tests.assistance.conftest import Assistance
from tests.support import read_topic

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


_TOWNS = iter(random.sample(range(100), 100))


def a_town() -> str:
    """A town of this module's own, apart from the other tests' towns (4418811..)."""
    return f"4418812{next(_TOWNS):02d}"


async def test_town_report_isolation_and_sign_off(a: Assistance) -> None:
    town, other = a_town(), a_town()
    last = Period.of(domain.today()).shift(-1)
    day = str(last.last_day)  # always within the visit backdating window
    officer = ContactSnapshot(role="assistance_officer", name="李干部", phone="13800000001")
    leader = ContactSnapshot(role="town_leader", name="王书记", phone="13800000002")
    village = town + "001"
    monitored = await a.household(
        region_code=village, town_code=town, monitoring_status="monitored", contacts=[leader]
    )
    alleviated = [
        await a.household(region_code=village, town_code=town, contacts=[officer]) for _ in range(3)
    ]
    visits = [
        # 王书记 only phones the 监测户: a home visit was due
        {"household_id": monitored.household_id, "channel": "phone", "visitor": "王书记",
         "findings": "电话询问，家中一切正常"},
        # 李干部 visits two of the three, with the same text, and one finds a problem
        {"household_id": alleviated[0].household_id, "channel": "home", "visitor": "李干部",
         "findings": "收入稳定，两不愁三保障无问题"},
        {"household_id": alleviated[1].household_id, "channel": "home", "visitor": "李 干部",
         "findings": "收入稳定，两不愁三保障无问题。", "guarantees": {"housing": "prominent_issue"}},
    ]  # fmt: skip
    for body in visits:
        r = await a.client.post("/v1/visits", json={**body, "visited_on": day}, headers=a.rw)
        assert r.status_code == 201, r.text

    own = a.headers("assistance:read", "assistance:write", regions=(town,))
    path = f"/v1/reports/monthly/{last}/towns/{town}"
    r = await a.client.get(path, headers=own)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["status"] in ("due", "late") and report["town_code"] == town
    assert report["contact"]["due"] == 4 and report["contact"]["contacted"] == 3
    assert report["contact"]["not_reached_households"] == [alleviated[2].household_id]
    assert report["problems"]["found"] == 1 and report["problems"]["passed_on"] == 0
    signals = report["signals"]
    assert [s["household_id"] for s in signals["remote_for_home"]] == [monitored.household_id]
    assert (
        len(signals["copied_findings"]) == 1 and len(signals["copied_findings"][0]["visits"]) == 2
    )
    assert signals["empty_findings"] == [] and signals["busy_days"] == []
    people = {p["name"]: p for p in report["people"]}
    assert (people["李干部"]["due"], people["李干部"]["not_reached"]) == (3, 1)
    assert people["李干部"]["visits"] == 2 and people["李干部"]["signals"]["copied_findings"] == 2
    assert people["王书记"]["roles"] == ["town_leader"]

    # Region isolation: another town neither reads it nor sees it in its overview.
    stranger = a.headers("assistance:read", "assistance:write", regions=(other,))
    r = await a.client.get(path, headers=stranger)
    assert r.status_code == 403 and r.headers["content-type"].startswith(PROBLEM)
    r = await a.client.get(f"/v1/reports/monthly/{last}", headers=stranger)
    assert town not in {t["town_code"] for t in r.json()["towns"]}
    r = await a.client.get(f"/v1/reports/monthly/{last}", headers=own)
    assert [t["town_code"] for t in r.json()["towns"]] == [town]

    # Bad input is a problem naming what was wrong.
    for bad, msg in (("2026-13", "YYYY-MM"), (str(Period.of(domain.today()).shift(2)), "future")):
        r = await a.client.get(f"/v1/reports/monthly/{bad}/towns/{town}", headers=own)
        assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
        assert r.json()["errors"][0]["loc"] == ["path", "period"] and msg in r.text
    sign = {"signed_off_by": "镇长 陈某"}
    this_month = Period.of(domain.today())
    r = await a.client.post(
        f"/v1/reports/monthly/{this_month}/towns/{town}/sign-off", json=sign, headers=own
    )
    assert r.status_code == 422 and "not ended" in r.text
    r = await a.client.post(f"{path}/sign-off", json={"signed_off_by": ""}, headers=own)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "signed_off_by"]
    # Only the town itself signs: not another town, not the county, not a village.
    for regions in ((other,), ("441881",), (village,)):
        headers = a.headers("assistance:read", "assistance:write", regions=regions)
        r = await a.client.post(f"{path}/sign-off", json=sign, headers=headers)
        assert r.status_code == 403, (regions, r.text)
    r = await a.client.post(
        f"{path}/sign-off", json=sign, headers=a.headers("assistance:read", regions=(town,))
    )
    assert r.status_code == 403  # the write scope

    r = await a.client.post(f"{path}/sign-off", json=sign, headers=own)
    assert r.status_code == 201, r.text
    signed = r.json()
    assert signed["status"] == "signed_off" and signed["signed_off_by"] == "镇长 陈某"
    assert signed["contact"] == report["contact"]
    r = await a.client.post(f"{path}/sign-off", json=sign, headers=own)
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)

    # The signed report never changes: a later visit is not in it.
    r = await a.client.post(
        "/v1/visits",
        json={"household_id": alleviated[2].household_id, "channel": "home",
              "visitor": "李干部", "findings": "补访", "visited_on": day},
        headers=a.rw,
    )  # fmt: skip
    assert r.status_code == 201
    assert (await a.client.get(path, headers=own)).json() == signed
    [event] = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: (
            e.type == "backstop.assistance.monthly_report.signed.v1" and e.subject == town
        ),
    )
    assert event.data["not_reached"] == 1 and event.data["signals"]["remote_for_home"] == 1


async def test_a_missing_report_is_late_once_per_round(a: Assistance) -> None:
    town = a_town()
    await a.household(region_code=town + "001", town_code=town)
    last = Period.of(domain.today()).shift(-1)
    late_on = last.last_day + timedelta(days=6)  # the 5-day default has passed
    sessions = a.runtime.sessions
    await monthly_reports.emit_late_reports(sessions, on=late_on)
    assert await monthly_reports.emit_late_reports(sessions, on=late_on) == 0  # claimed
    [event] = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: (
            e.type == "backstop.assistance.monthly_report.overdue.v1" and e.subject == town
        ),
    )
    # (the service's own job may have claimed it first, on today's date)
    assert event.data["period"] == str(last) and event.data["days_late"] >= 1
    assert event.data["reminder"] >= 1 and event.data["escalate_after_days"] == 3
    r = await a.client.get(
        f"/v1/reports/monthly/{last}", headers=a.headers("assistance:read", regions=(town,))
    )
    [entry] = r.json()["towns"]
    assert entry["due_on"] == str(last.last_day + timedelta(days=5)) and entry["due"] == 1
