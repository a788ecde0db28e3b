"""The quarterly return to the province (季度动态监测上报) end to end, every service its own
process on the real PostgreSQL and Kafka: a seeded town whose low-income households risk
flags, the procedure run through assistance's API, guarantee and income changes written
in registry, a measure in a plan. The return's rows agree with the events of the quarter
on the bus (decisions, plans, registry's household updates); the previous quarter, closed
by the county, keeps its return whatever comes later, and the diff says what moved."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from backstop.events import CloudEvent
from services.assistance.quarterly import Quarter
from tests.assistance.conftest import backdate_case
from tests.e2e.system import System
from tests.e2e.test_quality import id_number
from tests.support import checklist, read_topic, wait_for

pytestmark = pytest.mark.integration

TOWN = "441881101"
VILLAGE = TOWN + "001"
LOW_INCOME = 6000.0  # two people: 3,000 a head, under the monitoring line → at_risk


async def register(registry: httpx.AsyncClient, rng: random.Random, income: float) -> str:
    # A random birth day each: id_number draws from 50 numbers a day and sex, and every
    # e2e test registers into the same registry (one fixed day collided in CI: a 409).
    head_born = date(1965, 1, 1) + timedelta(days=rng.randrange(15 * 365))
    spouse_born = date(1965, 1, 1) + timedelta(days=rng.randrange(15 * 365))
    body = {
        "region_code": VILLAGE,
        "type": "alleviated",
        "household_number": f"QR{rng.randrange(10**12):012d}",
        "annual_income": {"year": 2025, "total": income},
        "members": [
            {"id_number": id_number(rng, head_born, male=True), "name": "户主",
             "relation": "head"},
            {"id_number": id_number(rng, spouse_born, male=False), "name": "配偶",
             "relation": "spouse"},
        ],
    }  # fmt: skip
    r = await registry.post("/v1/households", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def run_procedure(
    system: System, assistance: httpx.AsyncClient, case_id: str, on: date
) -> None:
    """民主评议 → 公示 → 乡镇审核 → 县级确认, decided `on` (the case backdated to allow it)."""
    today = date.today()
    await backdate_case(system.database_urls["assistance"], case_id, days=(today - on).days + 9)
    steps: list[tuple[str, dict[str, Any]]] = [
        ("appraisal", {"held_on": str(on - timedelta(days=8)), "chaired_by": "村支书",
                       "attendance": 20, "votes_for": 18, "votes_against": 0}),
        ("notice", {"start_on": str(on - timedelta(days=7)), "end_on": str(on - timedelta(days=2)),
                    "posted_at": "村务公开栏", "recorded_by": "村文书"}),
        ("town-review", {"approved": True, "reviewed_by": "镇", "reviewed_on": str(on)}),
        ("county-approval", {"approved": True, "reviewed_by": "县", "reviewed_on": str(on)}),
    ]  # fmt: skip
    for step, body in steps:
        r = await assistance.post(f"/v1/cases/{case_id}/{step}", json=body)
        assert r.status_code == 200, f"{step}: {r.text}"
    assert r.json()["status"] == "approved"


async def identify(system: System, assistance: httpx.AsyncClient, hid: str, on: date) -> str:
    """The household's verification task (opened by risk's alert) confirmed, and the
    identification decided `on`; returns the case id."""

    async def task() -> str | None:
        items = (await assistance.get("/v1/tasks", params={"household_id": hid})).json()["items"]
        return items[0]["id"] if items else None

    task_id = await wait_for(task, timeout=60, interval=0.5, message="risk's alert → a task")
    r = await assistance.post(f"/v1/tasks/{task_id}/complete", json={
        "outcome": "confirmed", "verified_by": "镇干部", "monitoring_type": "marginal",
        **checklist(income=LOW_INCOME)})  # fmt: skip
    assert r.status_code == 200, r.text
    case_id = str(r.json()["case_id"])
    await run_procedure(system, assistance, case_id, on)
    return case_id


async def the_return(client: httpx.AsyncClient, quarter: Quarter | str) -> dict[str, Any]:
    r = await client.get(f"/v1/province/returns/{quarter}", params={"town": TOWN})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _changed(event: CloudEvent, field: str) -> bool:
    """Registry's update changed `field` (it names a guarantee as `guarantees.housing`)."""
    return any(f.split(".")[0] == field for f in event.data.get("changed_fields", []))


def ids(rows: list[dict[str, Any]], field: str = "household_id") -> set[str]:
    return {r[field] for r in rows}


async def test_the_return_agrees_with_the_quarters_events(system: System) -> None:
    rng = random.Random()
    today = date.today()
    current = Quarter.of(today)
    last = current.previous()
    in_last = last.last_day - timedelta(days=10)
    registry = system.client("registry", "registry:write", "registry:read")
    assistance = system.client(
        "assistance", "assistance:read", "assistance:write", regions=("441881",)
    )
    province = system.client("assistance", "province:read", regions=("441881",))
    async with registry, assistance, province:
        entering = await register(registry, rng, LOW_INCOME)  # identified last quarter
        late = await register(registry, rng, LOW_INCOME)  # decided last quarter, recorded late
        steady = await register(registry, rng, 36000)  # guarantee and income changes

        # Last quarter: `entering` enters monitoring; registry applies it and assistance
        # hears it back, so it is on the roll when the county closes the quarter.
        entering_case = await identify(system, assistance, entering, in_last)

        async def on_roll() -> bool:
            roll = (await the_return(province, last))["sections"]["monitored"]
            return entering in ids(roll)

        await wait_for(on_roll, timeout=60, interval=0.5, message="the household on the roll")
        before_close = await the_return(province, last)
        assert ids(before_close["sections"]["entered"], "case_id") == {entering_case}
        r = await assistance.post(
            f"/v1/reports/quarterly/{last}/close", json={"closed_by": "县扶贫办"}
        )
        assert r.status_code == 201, r.text
        closed_at = r.json()["closed_at"]
        frozen = await the_return(province, last)
        assert frozen["status"] == "closed"
        assert frozen["sections"] == before_close["sections"]

        # This quarter. A decision dated last quarter but recorded after its close (late).
        late_case = await identify(system, assistance, late, in_last)
        # `entering`'s risk eliminated (自然消除), with a measure in its plan first.
        r = await assistance.post("/v1/plans", json={
            "household_id": entering, "year": today.year, "created_by": "帮扶责任人",
            "measures": [{"category": "employment", "description": "公益性岗位转就业",
                          "start_on": str(current.start), "end_on": str(current.last_day),
                          "amount": "1200.00", "responsible_unit": "镇人社所"}]})  # fmt: skip
        assert r.status_code == 201, r.text
        r = await assistance.post("/v1/eliminations", json={
            "household_id": entering, "method": "natural", "requested_by": "村干部",
            "reason": "外出务工收入稳定"})  # fmt: skip
        assert r.status_code == 201, r.text
        await run_procedure(system, assistance, r.json()["id"], today)
        # Registry: a housing problem found, and this year's income recorded, for `steady`.
        r = await registry.patch(
            f"/v1/households/{steady}", json={"guarantees": {"housing": "prominent_issue"}}
        )
        assert r.status_code == 204, r.text
        r = await registry.put(
            f"/v1/households/{steady}/incomes/{today.year}",
            json={"year": today.year, "total": 28000},
        )
        assert r.status_code == 204, r.text

        # The events of the quarter, as every other consumer sees them.
        mine = {entering, late, steady}
        decisions = await read_topic(
            system.settings("assistance"), "assistance.decisions", min_count=4, timeout=60,
            match=lambda e: e.subject in mine,
        )  # fmt: skip
        updates = await read_topic(
            system.settings("registry"), "registry.households", min_count=2, timeout=60,
            match=lambda e: e.subject == steady
            and (_changed(e, "guarantees") or _changed(e, "incomes")),
        )  # fmt: skip

        def after_close(e: CloudEvent) -> bool:
            return e.time > datetime.fromisoformat(closed_at)

        started = [e for e in decisions if e.type.endswith("monitoring.started.v1")]
        eliminated = [e for e in decisions if e.type.endswith("risk.eliminated.v1")]
        plans = [e for e in decisions if e.type.endswith("plan.created.v1")]
        # Identifications of this quarter: the late one (dated last quarter, decided after
        # the close); `entering`'s was before the close, so it stays last quarter's.
        expected_entered = {
            e.data["case_id"]
            for e in started
            if after_close(e) or e.data["decided_on"] >= str(current.start)
        }
        assert expected_entered == {late_case}
        expected_measures = {m["measure_id"] for e in plans for m in e.data["measures"]}

        async def complete() -> dict[str, Any] | None:
            ret = await the_return(province, current)
            s = ret["sections"]
            mine_changes = [g for g in s["guarantee_changes"] if g["household_id"] == steady]
            mine_incomes = [i for i in s["income_updates"] if i["household_id"] == steady]
            return ret if mine_changes and mine_incomes and s["eliminated"] else None

        ret = await wait_for(complete, timeout=60, interval=0.5, message="registry's changes")
        s = ret["sections"]
        # This system is this test's alone: its town holds only these households.
        assert ids(s["entered"], "case_id") == expected_entered
        assert ids(s["eliminated"], "case_id") == {e.data["case_id"] for e in eliminated}
        [gone] = [r for r in s["eliminated"] if r["household_id"] == entering]
        assert (gone["method"], gone["reason"]) == ("natural", "外出务工收入稳定")
        assert ids(s["measures"], "measure_id") == expected_measures
        [housing] = [g for g in s["guarantee_changes"] if g["household_id"] == steady]
        [guarantee_event] = [e for e in updates if _changed(e, "guarantees")]
        assert housing["after"] == guarantee_event.data["household"]["guarantees"]["housing"]
        assert (housing["item"], housing["direction"]) == ("housing", "worse")
        [income] = [i for i in s["income_updates"] if i["household_id"] == steady]
        [income_event] = [e for e in updates if _changed(e, "incomes")]
        newest = income_event.data["household"]["incomes"][0]
        assert (income["year"], income["after"], income["before"]) == (
            newest["year"], newest["total"], None
        )  # fmt: skip
        for section in ("entered", "eliminated", "guarantee_changes", "income_updates"):
            assert ret["counts"][section] == len(s[section])

        # The roll: `late` now monitored; `entering` left it when its risk was eliminated.
        async def roll_moved() -> dict[str, Any] | None:
            now = await the_return(province, current)
            roll = ids(now["sections"]["monitored"])
            return now if late in roll and entering not in roll else None

        await wait_for(roll_moved, timeout=60, interval=0.5, message="the roll to move")

        # The closed quarter did not change; the diff shows what moved since.
        assert await the_return(province, last) == frozen
        r = await province.get(f"/v1/province/returns/{current}/diff", params={"town": TOWN})
        assert r.status_code == 200, r.text
        diff = r.json()
        assert (diff["previous_quarter"], diff["previous_status"]) == (str(last), "closed")
        roll = diff["sections"]["monitored"]
        assert late in ids(roll["added"]) and entering in ids(roll["removed"])
        assert ids(diff["sections"]["entered"]["added"], "case_id") == {late_case}
        assert ids(diff["sections"]["entered"]["removed"], "case_id") == {entering_case}
        assert diff["counts"]["eliminated"]["change"] == len(s["eliminated"]) - len(
            frozen["sections"]["eliminated"]
        )
