"""Alert → verification task → identification procedure → decision, on the real
PostgreSQL and Kafka (risk and registry are played by producing their events)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from backstop.contracts.assistance import (
    FindingObserved,
    MonitoringStarted,
    TaskHandedOver,
    TaskOverdue,
)
from services.assistance import domain, tasks
from services.assistance.models import Case, CasePage, CaseStep, Task, TaskPage
from tests.assistance.conftest import TOWN, VILLAGE, Assistance, alert, backdate_case
from tests.support import checklist, read_topic, wait_for

pytestmark = pytest.mark.integration


async def tasks_of(a: Assistance, household_id: str) -> list[dict]:
    r = await a.client.get("/v1/tasks", params={"household_id": household_id}, headers=a.rw)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_alert_to_task_to_procedure_to_monitoring_decision(a: Assistance) -> None:
    household = await a.household(type="alleviated")
    hid = household.household_id
    await a.send(alert(hid, ["low_income", "housing"]))
    tasks = await wait_for(lambda: tasks_of(a, hid), message="verification task")
    assert len(tasks) == 1
    task = tasks[0]
    assert task["kind"] == "verification" and task["status"] == "open"
    assert task["assignee"] == {"type": "town", "code": TOWN}
    assert task["reason"] == domain.reason_for(["low_income", "housing"])
    assert "人均纯收入低于监测线" in task["reason"]
    assert task["due_on"] == (domain.today() + timedelta(days=7)).isoformat()

    # The assignee (its village work team) claims and verifies.
    r = await a.client.post(
        f"/v1/tasks/{task['id']}/claim", json={"claimed_by": "王村干"}, headers=a.rw
    )
    assert r.status_code == 200 and r.json()["claimed_by"] == "王村干"
    done = {
        "outcome": "confirmed",
        "verified_by": "王村干",
        "notes": "房屋漏雨，收入下降",
        **checklist(housing="prominent_issue"),
    }
    r = await a.client.post(f"/v1/tasks/{task['id']}/complete", json=done, headers=a.rw)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"
    case_id = r.json()["case_id"]
    assert case_id
    again = await a.client.post(f"/v1/tasks/{task['id']}/complete", json=done, headers=a.rw)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")

    # Steps cannot be skipped: approval before appraisal is refused and changes nothing.
    today = domain.today()
    review = {"approved": True, "reviewed_by": "县扶贫办", "reviewed_on": today.isoformat()}
    r = await a.client.post(f"/v1/cases/{case_id}/county-approval", json=review, headers=a.rw)
    assert r.status_code == 409
    assert r.json()["expected_step"] == "appraisal"
    appraisal = {
        "held_on": (today - timedelta(days=10)).isoformat(),
        "chaired_by": "村支书",
        "attendance": 30,
        "votes_for": 27,
        "votes_against": 1,
    }
    # No step before the verification that opened the case (today): no backdating.
    r = await a.client.post(f"/v1/cases/{case_id}/appraisal", json=appraisal, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "held_on"]
    assert "before the verification" in r.json()["detail"]
    await backdate_case(a.settings.db_url, case_id, days=11)
    r = await a.client.post(
        f"/v1/cases/{case_id}/appraisal",
        json=appraisal,
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    assert r.json()["next_step"] == "notice"
    too_short = {
        "start_on": (today - timedelta(days=9)).isoformat(),
        "end_on": (today - timedelta(days=6)).isoformat(),
        "posted_at": "村务公开栏",
        "recorded_by": "村文书",
        "objections": [{"raised_on": (today - timedelta(days=8)).isoformat(), "summary": "异议"}],
    }
    r = await a.client.post(f"/v1/cases/{case_id}/notice", json=too_short, headers=a.rw)
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["errors"]} == {
        ("body", "end_on"),
        ("body", "objections"),
    }
    notice = {
        **too_short,
        "end_on": (today - timedelta(days=4)).isoformat(),
        "objections": [
            {
                "raised_on": (today - timedelta(days=8)).isoformat(),
                "summary": "邻居认为收入偏高",
                "resolution": "复核工资流水，异议不成立",
            }
        ],
    }
    r = await a.client.post(f"/v1/cases/{case_id}/notice", json=notice, headers=a.rw)
    assert r.status_code == 200, r.text
    r = await a.client.post(
        f"/v1/cases/{case_id}/town-review",
        json={**review, "reviewed_by": "镇扶贫办"},
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    r = await a.client.post(f"/v1/cases/{case_id}/county-approval", json=review, headers=a.rw)
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["status"] == "approved"
    assert [s["step"] for s in case["steps"]] == [
        "appraisal",
        "notice",
        "town_review",
        "county_approval",
    ]
    assert all(s["acted_by"] and s["recorded_at"] for s in case["steps"])

    decisions = await read_topic(
        a.settings, "assistance.decisions", match=lambda e: e.subject == hid
    )
    started = decisions[0].payload()
    assert isinstance(started, MonitoringStarted)
    assert started.monitoring_type == "unstable"
    assert started.risk_factors == ["low_income", "housing"]
    assert started.case_id == case_id and started.approved_by == "县扶贫办"

    findings = await read_topic(a.settings, "assistance.findings", match=lambda e: e.subject == hid)
    finding = findings[0].payload()
    assert isinstance(finding, FindingObserved)
    assert (
        finding.origin == "verification"
        and finding.guarantees == checklist(housing="prominent_issue")["guarantees"]
    )

    opened = await read_topic(
        a.settings,
        "assistance.tasks",
        min_count=2,
        match=lambda e: e.subject == hid,
    )
    assert [e.type for e in opened] == [
        "backstop.assistance.task.opened.v1",
        "backstop.assistance.task.completed.v1",
    ]
    # No ID numbers in events, and the correlation id of the alert is carried through.
    assert all("id_number" not in e.to_bytes().decode() for e in decisions + opened)


async def test_alert_redelivered_five_times_gives_one_task(a: Assistance) -> None:
    hid = (await a.household()).household_id
    same = alert(hid, ["low_income"])
    for _ in range(5):  # the very same event, as a redelivery
        await a.send(same)
    other = (await a.household()).household_id
    for factors in (["low_income"], ["income_drop"], ["low_income"], ["housing"], ["other"]):
        await a.send(alert(other, factors))  # five distinct alerts while one task is open
    marker = (await a.household()).household_id
    await a.send(alert(marker, ["low_income"]))
    await wait_for(lambda: tasks_of(a, marker), message="marker task")
    # Alerts of one household are ordered in their partition; wait for the last one joined.
    await wait_for(
        lambda: _factors(a, other, {"low_income", "income_drop", "housing", "other"}),
        message="all five alerts applied",
    )
    assert len(await tasks_of(a, hid)) == 1
    assert len(await tasks_of(a, other)) == 1
    async with a.runtime.sessions() as session:
        n = await session.scalar(
            select(func.count()).select_from(Task).where(Task.household_id.in_([hid, other]))  # type: ignore[attr-defined]
        )
    assert n == 2


async def _factors(a: Assistance, household_id: str, wanted: set[str]) -> bool:
    tasks = await tasks_of(a, household_id)
    return bool(tasks) and set(tasks[0]["factors"]) == wanted


async def test_department_case_goes_to_insurer_after_county_first_check(a: Assistance) -> None:
    """Seed 三(三)3: 市扶贫办经初核后，集中交由人保公司按程序入户核实处理."""
    hid = (await a.household()).household_id
    await a.send(alert(hid, ["illness", "expense_surge"]))
    [task] = await wait_for(lambda: tasks_of(a, hid), message="task")
    assert task["assignee"] == {"type": "insurer", "code": "picc"}
    assert task["needs_precheck"] is True
    done = {"outcome": "not_confirmed", "verified_by": "人保核查员", **checklist()}
    insurer = a.headers("assistance:read", "assistance:write", "assistance:insurer")
    town = a.headers("assistance:read", "assistance:write", regions=(TOWN,))
    url = f"/v1/tasks/{task['id']}"
    r = await a.client.post(f"{url}/complete", json=done, headers=insurer)
    assert r.status_code == 409  # the county's 初核 first
    precheck = {"checked_by": "县扶贫办"}
    for who in (town, insurer):  # 初核 is the county office's
        assert (
            await a.client.post(f"{url}/precheck", json=precheck, headers=who)
        ).status_code == 403
    r = await a.client.post(f"{url}/precheck", json=precheck, headers=a.rw)
    assert r.status_code == 200
    r = await a.client.post(f"{url}/complete", json=done, headers=insurer)
    assert r.status_code == 409 and "集中交由" in r.json()["detail"]

    # A town task already open is handed on when department data flags the household.
    other = (await a.household()).household_id
    await a.send(alert(other, ["low_income"]))
    [town_task] = await wait_for(lambda: tasks_of(a, other), message="town task")
    assert town_task["assignee"]["type"] == "town"
    r = await a.client.post(f"/v1/tasks/{town_task['id']}/complete", json=done, headers=insurer)
    assert r.status_code == 403  # the insurer completes only its own tasks
    await a.send(alert(other, ["disaster"]))
    rerouted = await wait_for(
        lambda: _insurer_task(a, other), message="the town task handed to the insurer"
    )
    assert rerouted["id"] == town_task["id"] and rerouted["needs_precheck"] is True

    # 集中交由: a batch, all or none; only pre-checked insurer cases.
    handover = {"task_ids": [task["id"], rerouted["id"]], "handed_by": "县扶贫办"}
    r = await a.client.post("/v1/tasks/handover", json=handover, headers=a.rw)
    assert r.status_code == 409 and r.json()["errors"][0]["loc"] == ["body", "task_ids", 1]
    r = await a.client.post("/v1/tasks/handover", json=handover, headers=town)
    assert r.status_code == 403
    r = await a.client.post(
        "/v1/tasks/handover", json={**handover, "task_ids": [task["id"]]}, headers=a.rw
    )
    assert r.status_code == 200, r.text
    [handed] = r.json()["items"]
    # The insurer's due date counts from the handover.
    assert handed["handed_over_at"] and handed["due_on"] == str(domain.today() + timedelta(days=7))
    # notify hears of it (to remind the insurer): one event per task handed over.
    [event] = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: e.subject == hid and e.type == "backstop.assistance.task.handed_over.v1",
    )
    payload = event.payload()
    assert isinstance(payload, TaskHandedOver) and payload.task_id == task["id"]
    assert payload.assignee.type == "insurer" and str(payload.due_on) == handed["due_on"]
    assert payload.handed_over_by == "县扶贫办"
    r = await a.client.post(f"{url}/complete", json=done, headers=town)
    assert r.status_code == 403  # nor does a town complete the insurer's task
    r = await a.client.post(f"{url}/complete", json=done, headers=insurer)
    assert r.status_code == 200 and r.json()["case_id"] is None


async def _insurer_task(a: Assistance, hid: str) -> dict | None:
    tasks = await tasks_of(a, hid)
    return tasks[0] if tasks and tasks[0]["assignee"]["type"] == "insurer" else None


async def test_overdue_is_emitted_once_even_with_two_replicas(a: Assistance) -> None:
    hid = (await a.household()).household_id
    await a.send(alert(hid, ["low_income"]))
    [task] = await wait_for(lambda: tasks_of(a, hid), message="task")
    later = domain.today() + timedelta(days=30)
    counts = await asyncio.gather(
        tasks.emit_overdue_tasks(a.runtime.sessions, on=later),
        tasks.emit_overdue_tasks(a.runtime.sessions, on=later),
    )
    again = await tasks.emit_overdue_tasks(a.runtime.sessions, on=later)
    assert again == 0
    assert sum(counts) >= 1
    events = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: e.subject == hid and e.type == "backstop.assistance.task.overdue.v1",
    )
    assert len(events) == 1
    overdue = events[0].payload()
    assert isinstance(overdue, TaskOverdue) and overdue.task_id == task["id"]
    assert overdue.days_overdue == 23


async def test_tasks_are_region_scoped_and_bad_input_is_a_problem(a: Assistance) -> None:
    hid = (await a.household()).household_id
    await a.send(alert(hid, ["low_income"]))
    [task] = await wait_for(lambda: tasks_of(a, hid), message="task")
    elsewhere = a.headers("assistance:read", "assistance:write", regions=("441882",))
    r = await a.client.get("/v1/tasks", params={"household_id": hid}, headers=elsewhere)
    assert r.json()["items"] == []
    r = await a.client.post(
        f"/v1/tasks/{task['id']}/complete",
        json={"outcome": "confirmed", "verified_by": "x", **checklist()},
        headers=elsewhere,
    )
    assert r.status_code == 404
    r = await a.client.post(
        f"/v1/tasks/{task['id']}/complete",
        json={"outcome": "maybe", "verified_by": "x", **checklist()},
        headers=a.rw,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "outcome"]
    r = await a.client.get("/v1/tasks", headers=a.headers("risk:read"))
    assert r.status_code == 403
    r = await a.client.get("/v1/tasks", params={"cursor": "nonsense"}, headers=a.rw)
    assert r.status_code == 422


async def test_task_list_paginates(a: Assistance) -> None:
    ids = []
    for _ in range(3):
        hid = (await a.household(region_code=VILLAGE)).household_id
        await a.send(alert(hid, ["low_income"]))
        ids.append(hid)
    for hid in ids:
        await wait_for(lambda hid=hid: tasks_of(a, hid), message="task")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await a.client.get("/v1/tasks", params=params, headers=a.rw)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) >= 3


async def every_page(
    a: Assistance,
    url: str,
    page: type[BaseModel],
    ours: Container[str],
    regions: tuple[str, ...],
    **params: str,
) -> list[dict]:
    """The items of `ours` a list at `url` shows, a page of one at a time (`regions`: the
    token's): each page's bytes are what its documented model writes, and each item is
    what the thing's own GET shows (other tests' items are left out)."""
    headers = a.headers("assistance:read", regions=regions)
    found: list[dict] = []
    cursor = None
    while True:
        query = {**params, "limit": "1", **({"cursor": cursor} if cursor else {})}
        r = await a.client.get(url, params=query, headers=headers)
        assert r.status_code == 200, r.text
        assert r.content == page.model_validate_json(r.content).model_dump_json().encode()
        for item in r.json()["items"]:
            if item["id"] in ours:
                one = await a.client.get(f"{url}/{item['id']}", headers=a.rw)
                assert one.json() == item
                found.append(item)
        cursor = r.json()["next_cursor"]
        if not cursor:
            return found


async def test_task_list_filters_and_its_json_is_the_models(a: Assistance) -> None:
    """Every filter of the list, the region scoping and the derived "overdue", on rows of
    every shape; the page's bytes are exactly what its documented model writes, and each
    item is what the task's own GET shows."""
    today = domain.today()
    at = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # whole seconds: no fraction written
    rows = [
        Task(kind="verification", household_id="h1", region_code=VILLAGE, status="open",
             assignee_type="town", assignee_code=TOWN, due_on=today - timedelta(days=1),
             reason="低收入", factors=["low_income"], origin="alert", opened_at=at),
        Task(kind="verification", household_id="h2", region_code=VILLAGE, status="open",
             assignee_type="insurer", assignee_code="picc", due_on=today, reason="r",
             origin="clue", needs_precheck=True, prechecked_by="县", handed_over_at=at,
             opened_at=at, notes='引号 " \\ 换行\n', guarantees={"food": "ok", "安全饮水": "有"}),
        Task(kind="review", household_id="h1", region_code=VILLAGE, status="done",
             assignee_type="town", assignee_code=TOWN, due_on=today - timedelta(days=9),
             reason="r", origin="campaign", claimed_by="王", outcome="confirmed",
             verified_by="王", completed_at=at + timedelta(microseconds=100_000),
             opened_at=at + timedelta(microseconds=1)),
        Task(kind="verification", household_id="h3", region_code="441882101001",
             status="cancelled", assignee_type="town", assignee_code="441882101",
             due_on=today - timedelta(days=3), reason="r", origin="alert",
             opened_at=at - timedelta(days=1)),
    ]  # fmt: skip
    async with a.runtime.sessions() as session:
        session.add_all(rows)
        await session.commit()
    by_id = {t.id: t for t in rows}
    expected_order = [t.id for t in sorted(rows, key=lambda t: (t.opened_at, t.id))]

    async def listed(regions: tuple[str, ...] = ("*",), **params: str) -> list[str]:
        found = await every_page(a, "/v1/tasks", TaskPage, by_id, regions=regions, **params)
        return [t["id"] for t in found]

    def expect(pick: Callable[[Task], bool]) -> list[str]:
        return [i for i in expected_order if pick(by_id[i])]

    assert await listed() == expected_order
    assert await listed(status="overdue") == expect(lambda t: t.household_id == "h1" and t.kind == "verification")  # fmt: skip
    assert await listed(status="open") == expect(lambda t: t.status == "open")
    assert await listed(status="done") == expect(lambda t: t.status == "done")
    assert await listed(status="cancelled") == expect(lambda t: t.status == "cancelled")
    assert await listed(kind="review") == expect(lambda t: t.kind == "review")
    assert await listed(household_id="h1") == expect(lambda t: t.household_id == "h1")
    assert await listed(assignee="picc") == expect(lambda t: t.assignee_code == "picc")
    assert await listed(household_id="h1", status="open") == expect(
        lambda t: t.household_id == "h1" and t.status == "open"
    )
    assert await listed(("441882",)) == expect(lambda t: t.region_code.startswith("441882"))
    assert await listed(("441882", TOWN)) == expected_order
    assert await listed(("45",)) == []
    statuses = {
        item["id"]: item["status"]
        for item in (await a.client.get("/v1/tasks", headers=a.rw)).json()["items"]
    }
    assert [statuses[t.id] for t in rows] == ["overdue", "open", "done", "cancelled"]


async def test_case_list_filters_and_its_json_is_the_models(a: Assistance) -> None:
    """The cases list: its filters and region scoping, each case with its steps in the
    order they were recorded; the page's bytes are what its documented model writes, and
    each item is what the case's own GET shows."""
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    cases = [
        Case(kind="identification", household_id="k1", region_code=VILLAGE, opened_by="x",
             risk_factors=["low_income"], task_id="t1", opened_at=at),
        Case(kind="elimination", household_id="k1", region_code=VILLAGE, status="approved",
             elimination_method="natural", reason="理由 \"q\"", opened_by="县",
             opened_at=at + timedelta(microseconds=100_000), decided_on=date(2026, 4, 1),
             decided_by="县"),
        Case(kind="identification", household_id="k2", region_code="441882101001",
             status="rejected", opened_by="x", opened_at=at - timedelta(days=1)),
    ]  # fmt: skip
    steps = [
        CaseStep(case_id=cases[0].id, step="appraisal", acted_by="王", acted_on=date(2026, 3, 3),
                 passed=True, details={"attendance": 30, "votes_for": 20, "ratio": 0.5}),
        CaseStep(case_id=cases[0].id, step="notice", acted_by="王", acted_on=date(2026, 3, 9),
                 passed=True, details={"objections": [{"summary": "异议"}]}),
        CaseStep(case_id=cases[2].id, step="appraisal", acted_by="李", acted_on=date(2026, 3, 3),
                 passed=False, details={}),
    ]  # fmt: skip
    async with a.runtime.sessions() as session:
        session.add_all(cases)
        await session.flush()
        session.add_all(steps)
        await session.commit()
    by_id = {c.id: c for c in cases}
    expected_order = [c.id for c in sorted(cases, key=lambda c: (c.opened_at, c.id))]

    async def listed(regions: tuple[str, ...] = ("*",), **params: str) -> list[dict]:
        return await every_page(a, "/v1/cases", CasePage, by_id, regions=regions, **params)

    def expect(pick: Callable[[Case], bool]) -> list[str]:
        return [i for i in expected_order if pick(by_id[i])]

    every = {c["id"]: c for c in await listed()}
    assert list(every) == expected_order
    first = every[cases[0].id]
    assert [s["step"] for s in first["steps"]] == ["appraisal", "notice"]
    assert first["steps"][0]["label"] == "民主评议" and first["next_step"] == "town_review"
    assert first["steps"][0]["details"] == {"attendance": 30, "votes_for": 20, "ratio": 0.5}
    assert every[cases[1].id]["steps"] == [] and every[cases[1].id]["next_step"] is None
    ids = [c["id"] for c in await listed(status="approved")]
    assert ids == expect(lambda c: c.status == "approved")
    ids = [c["id"] for c in await listed(kind="identification")]
    assert ids == expect(lambda c: c.kind == "identification")
    ids = [c["id"] for c in await listed(household_id="k1", status="in_progress")]
    assert ids == expect(lambda c: c.household_id == "k1" and c.status == "in_progress")
    ids = [c["id"] for c in await listed(("441882",))]
    assert ids == expect(lambda c: c.region_code.startswith("441882"))
    assert await listed(("45",)) == []
    r = await a.client.get("/v1/cases", params={"cursor": "nonsense"}, headers=a.rw)
    assert r.status_code == 422
