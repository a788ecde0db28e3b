"""No risky family falls through a gap: `watch` households are checked too, and new
evidence re-alerts (issue 21), on the real PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from backstop.contracts.risk import AlertRenewed, AssessmentChanged, FactorData
from backstop.events import CloudEvent, make_event
from services.assistance import domain
from tests.assistance.conftest import TOWN, VILLAGE, Assistance, alert
from tests.assistance.test_tasks_procedure import tasks_of
from tests.support import checklist, wait_for

pytestmark = pytest.mark.integration

NOT_CONFIRMED = {"outcome": "not_confirmed", "verified_by": "镇干部", **checklist()}


def assessment(household_id: str, level: str, previous: str | None) -> CloudEvent:
    return make_event(
        "risk",
        AssessmentChanged(
            household_id=household_id,
            region_code=VILLAGE,
            level=level,  # type: ignore[arg-type]
            previous_level=previous,  # type: ignore[arg-type]
            score=35,
            previous_score=0,
            factors=[FactorData(code="housing", points=35, evidence="住房可能存在问题")],
            per_capita_income=10000,
            income_line=7300,
            policy_version=1,
            assessed_at=datetime.now(UTC),
        ),
        subject=household_id,
    )


def renewed(household_id: str, evidence: list[str]) -> CloudEvent:
    return make_event(
        "risk",
        AlertRenewed(
            household_id=household_id,
            region_code=VILLAGE,
            level="at_risk",
            previous_level="at_risk",
            score=70,
            factors=["low_income", *evidence],
            assessed_at=datetime.now(UTC),
            policy_version=1,
            new_evidence=evidence,
        ),
        subject=household_id,
        correlation_id=str(uuid.uuid4()),
    )


async def test_a_watch_household_is_checked_with_more_time(a: Assistance) -> None:
    """Seed 二(二): 依据系统监测提示的…"可能存在问题尚无致贫返贫风险"、"存在突出问题有返贫
    致贫风险"等情况，由镇村干部及时入户核实 — both levels get a home check."""
    hid = (await a.household()).household_id
    await a.send(assessment(hid, "watch", "none"))
    [task] = await wait_for(lambda: tasks_of(a, hid), message="watch task")
    policy = domain.AssistancePolicy()
    assert task["origin"] == "watch" and task["assignee"] == {"type": "town", "code": TOWN}
    watch_due = domain.today() + timedelta(days=policy.watch_verification_due_days)
    assert task["due_on"] == watch_due.isoformat()
    assert task["reason"].startswith("可能存在问题")
    assert policy.watch_verification_due_days > policy.verification_due_days
    # Rising to at_risk joins the open check and brings its due date forward.
    await a.send(alert(hid, ["low_income"]))
    joined = await wait_for(
        lambda: _task_if(a, hid, lambda t: "low_income" in t["factors"]), message="joined"
    )
    assert joined["id"] == task["id"]
    assert joined["due_on"] == (domain.today() + timedelta(days=7)).isoformat()

    # A watch that stays watch, or falls back to it from at_risk, opens nothing more.
    other = (await a.household()).household_id
    await a.send(assessment(other, "watch", "at_risk"))
    marker = (await a.household()).household_id
    await a.send(assessment(marker, "watch", None))
    await wait_for(lambda: tasks_of(a, marker), message="marker")
    assert await tasks_of(a, other) == []


async def test_new_evidence_reopens_after_not_confirmed_and_joins_an_open_check(
    a: Assistance,
) -> None:
    """Seed 二(一): 因病、因灾、因学支出达到监测预警线的名单下发各镇，及时入户核实 — a new
    cost of a household still at risk is a new reason, and "not confirmed" is not final."""
    hid = (await a.household()).household_id
    await a.send(alert(hid, ["low_income"]))
    [first] = await wait_for(lambda: tasks_of(a, hid), message="task")
    await a.send(renewed(hid, ["low_income"]))  # new evidence joins the open task
    joined = await wait_for(
        lambda: _task_if(a, hid, lambda t: "新证据" in t["reason"]), message="new reason"
    )
    assert joined["id"] == first["id"]
    r = await a.client.post(f"/v1/tasks/{first['id']}/complete", json=NOT_CONFIRMED, headers=a.rw)
    assert r.status_code == 200, r.text
    await a.send(renewed(hid, ["housing"]))  # the next material change
    again = await wait_for(
        lambda: _task_if(a, hid, lambda t: t["status"] == "open"), message="re-opened"
    )
    assert again["id"] != first["id"] and again["factors"] == ["housing"]


async def test_the_checklist_is_required(a: Assistance) -> None:
    """二(一): 入户核实了解"一达标、两不愁、三保障"情况 — each item, and the income."""
    hid = (await a.household()).household_id
    await a.send(alert(hid, ["low_income"]))
    [task] = await wait_for(lambda: tasks_of(a, hid), message="task")
    url = f"/v1/tasks/{task['id']}/complete"
    bare = {"outcome": "not_confirmed", "verified_by": "镇干部"}
    r = await a.client.post(url, json=bare, headers=a.rw)
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["errors"]} == {
        ("body", "guarantees"),
        ("body", "income"),
    }
    partial = {**NOT_CONFIRMED, "guarantees": {"housing": "ok"}}
    r = await a.client.post(url, json=partial, headers=a.rw)
    assert r.status_code == 422 and "drinking_water" in r.json()["errors"][0]["msg"]
    r = await a.client.post(url, json=NOT_CONFIRMED, headers=a.rw)
    assert r.status_code == 200 and r.json()["guarantees"]["drinking_water"] == "ok"


async def _task_if(a: Assistance, hid: str, test: object) -> dict | None:
    for task in await tasks_of(a, hid):
        if test(task):  # type: ignore[operator]
            return task
    return None
