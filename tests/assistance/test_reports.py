"""The quarterly dynamic-monitoring report (季度动态监测, issue 8): counts per town, the
risk-level read model, closing a quarter (stored, unchanged by late data, which shows in
the next quarter), bad quarters, and the XLSX for the county office."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook

from backstop.contracts.risk import AssessmentChanged
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from services.assistance import domain, quarterly, quarterly_xlsx, reports
from services.assistance.models import RiskLevel
from services.assistance.quarterly import Quarter, county_totals, empty_town, reporting_quarter
from tests.assistance.conftest import Assistance, alert, backdate_case
from tests.support import checklist, wait_for

# ------------------------------------------------------------------------ unit


def test_quarter_parsing_and_bounds() -> None:
    q = Quarter.parse("2026Q4")
    assert (q.start, q.last_day, q.end) == (date(2026, 10, 1), date(2026, 12, 31), date(2027, 1, 1))
    assert q.months() == ["2026-10", "2026-11", "2026-12"]
    assert str(q.next()) == "2027Q1" and str(Quarter.parse("2027Q1").previous()) == "2026Q4"
    assert Quarter.of(date(2026, 3, 31)) == Quarter(2026, 1)
    # 2026-09-30 16:30 UTC is already 1 October in China.
    assert Quarter.at(datetime(2026, 9, 30, 16, 30, tzinfo=UTC)) == Quarter(2026, 4)
    for bad in ("2026Q5", "2026q4", "2026-Q4", "26Q1", "2026Q4 ", "2026Q4\n", "1999Q4", ""):
        with pytest.raises(ValueError):
            Quarter.parse(bad)


def test_late_data_counts_in_the_first_quarter_open_when_it_was_recorded() -> None:
    q3, q4, q1 = Quarter(2026, 3), Quarter(2026, 4), Quarter(2027, 1)
    closed_q3 = datetime(2026, 10, 10, tzinfo=UTC)
    closed = {q3: closed_q3}
    before, after = closed_q3 - timedelta(seconds=1), closed_q3 + timedelta(days=1)
    assert reporting_quarter(q3, before, closed) == q3
    assert reporting_quarter(q3, after, closed) == q4  # late: the next quarter
    # Q4 closed too, before the fact arrived: it moves on to 2027Q1.
    closed[q4] = datetime(2027, 1, 5, tzinfo=UTC)
    assert reporting_quarter(q3, datetime(2027, 2, 1, tzinfo=UTC), closed) == q1
    assert reporting_quarter(q4, datetime(2027, 1, 2, tzinfo=UTC), closed) == q4


def test_months_due_and_county_totals() -> None:
    q4 = Quarter(2026, 4)
    assert quarterly.months_due(q4, date(2026, 11, 28)) == ["2026-10", "2026-11"]
    assert quarterly.months_due(q4, date(2027, 2, 1)) == q4.months()
    a, b = empty_town(), empty_town()
    a["contact"].update(due=4, compliant=3)
    b["contact"].update(due=1, compliant=0)
    a["grants"], b["grants"] = {"count": 1, "amount": "10.50"}, {"count": 2, "amount": "0.25"}
    a["eliminations"]["reasons"] = [{"method": "natural", "reason": "死亡", "count": 1}]
    b["eliminations"]["reasons"] = [{"method": "natural", "reason": "死亡", "count": 2}]
    total = county_totals([a, b])
    assert total["contact"]["rate"] == 0.6
    assert total["grants"] == {"count": 3, "amount": "10.75"}
    assert total["eliminations"]["reasons"] == [{"method": "natural", "reason": "死亡", "count": 3}]


# ---------------------------------------------------------------- integration


def assessment(household_id: str, region_code: str, level: str, at: datetime) -> CloudEvent:
    return make_event(
        "risk",
        AssessmentChanged(
            household_id=household_id,
            region_code=region_code,
            level=level,  # type: ignore[arg-type]
            previous_level=None,
            score={"none": 0, "watch": 40, "at_risk": 70}[level],
            previous_score=None,
            factors=[],
            per_capita_income=None,
            income_line=7300.0,
            policy_version=1,
            assessed_at=at,
        ),
        subject=household_id,
    )


async def level_of(a: Assistance, household_id: str) -> str | None:
    async with a.runtime.sessions() as session:
        row = await session.get(RiskLevel, household_id)
        return row.level if row else None


async def make_fund(a: Assistance, level: str, town: str | None = None) -> str:
    body: dict[str, Any] = {
        "code": f"r-{uuid.uuid4().hex[:10]}",
        "name": "报表测试基金",
        "level": level,
        "kind": "town" if town else "charity",
    }
    if town:
        body["town_code"] = town
    r = await a.client.post("/v1/funds", json=body, headers=a.rw)
    assert r.status_code == 201, r.text
    fund_id: str = r.json()["id"]
    r = await a.client.post(
        f"/v1/funds/{fund_id}/deposits",
        json={"amount": "100000.00", "donor": "慈善协会", "received_on": "2026-01-05"},
        headers={**a.rw, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return fund_id


async def pay_grant(
    a: Assistance, household_id: str, amount: str, funds: tuple[str, str], on: date
) -> None:
    r = await a.client.post(
        "/v1/grants",
        json={
            "household_id": household_id,
            "amount": amount,
            "purpose": "临时救助",
            "granted_by": "市扶贫办",
            "granted_on": on.isoformat(),
            "city_fund_id": funds[0],
            "town_fund_id": funds[1],
            # the household is not a 救助对象 (yet): the county overrides
            "override_reason": "县扶贫办批准",
        },
        headers={**a.rw, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text


async def verification_task(a: Assistance, household_id: str, region_code: str) -> str:
    await a.send(alert(household_id, ["low_income"], region_code=region_code))

    async def opened() -> str | None:
        r = await a.client.get("/v1/tasks", params={"household_id": household_id}, headers=a.rw)
        items = r.json()["items"]
        return items[0]["id"] if items else None

    task_id: str = await wait_for(opened, message="verification task")
    return task_id


async def approved_identification(a: Assistance, household_id: str, region: str, on: date) -> str:
    """Alert → verification → 民主评议 → 公示 → 乡镇审核 → 县级确认, the steps dated up to
    `on` (the decision date)."""
    task_id = await verification_task(a, household_id, region)
    r = await a.client.post(
        f"/v1/tasks/{task_id}/complete",
        json={
            "outcome": "confirmed",
            "verified_by": "镇干部",
            "monitoring_type": "marginal",
            **checklist(),
        },
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    case_id: str = r.json()["case_id"]
    await backdate_case(a.settings.db_url, case_id, days=(domain.today() - on).days + 9)
    steps: list[tuple[str, dict[str, Any]]] = [
        (
            "appraisal",
            {
                "held_on": str(on - timedelta(days=8)),
                "chaired_by": "村支书",
                "attendance": 20,
                "votes_for": 18,
                "votes_against": 0,
            },
        ),
        (
            "notice",
            {
                "start_on": str(on - timedelta(days=7)),
                "end_on": str(on - timedelta(days=2)),
                "posted_at": "村务公开栏",
                "recorded_by": "村文书",
            },
        ),
        ("town-review", {"approved": True, "reviewed_by": "镇", "reviewed_on": str(on)}),
        ("county-approval", {"approved": True, "reviewed_by": "县", "reviewed_on": str(on)}),
    ]
    for step, body in steps:
        r = await a.client.post(f"/v1/cases/{case_id}/{step}", json=body, headers=a.rw)
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    return case_id


def town_entry(report: dict[str, Any], town: str) -> dict[str, Any]:
    [entry] = [t for t in report["towns"] if t["town_code"] == town]
    return entry


@pytest.mark.integration
async def test_counts_per_town_and_risk_levels(a: Assistance) -> None:
    town, other = "441881171", "441881172"
    today = domain.today()
    quarter = Quarter.of(today)
    monitored = await a.household(
        region_code=town + "001", town_code=town, type="unstable", monitoring_status="monitored"
    )
    marginal = await a.household(region_code=town + "002", town_code=town, type="marginal")
    plain = await a.household(region_code=town + "001", town_code=town, type="alleviated")
    await a.household(region_code=other + "001", town_code=other, type="ordinary")

    # Risk levels from risk.assessments; an older assessment never overwrites a newer one.
    now = datetime.now(UTC)
    await a.send(assessment(monitored.household_id, monitored.region_code, "at_risk", now))
    await a.send(assessment(marginal.household_id, marginal.region_code, "watch", now))
    await wait_for(
        lambda: level_of(a, marginal.household_id), message="risk level in the read model"
    )
    await wait_for(lambda: level_of(a, monitored.household_id), message="risk level")
    stale = assessment(monitored.household_id, monitored.region_code, "none", now - timedelta(1))
    async with unit_of_work(a.runtime.sessions) as session:
        await reports.apply_assessment(session, stale)
    assert await level_of(a, monitored.household_id) == "at_risk"

    # All three are due for contact (seed 二(三): 脱贫户含监测户、边缘户); only the marginal
    # one is visited in every month. Visits of earlier months are logged late here, so the
    # county allows a longer back-dating than its 31 days.
    r = await a.client.put(
        "/v1/policy",
        json={"changed_by": "county-office", "policy": {"visit_backdate_days": 100}},
        headers=a.rw,
    )
    assert r.status_code == 200, r.text
    for month in quarterly.months_due(quarter, today):
        r = await a.client.post(
            "/v1/visits",
            json={
                "household_id": marginal.household_id,
                "channel": "phone",
                "visitor": "李干部",
                "visited_on": month + "-01",
                "findings": "生活正常",
            },
            headers=a.rw,
        )
        assert r.status_code == 201, r.text

    funds = (await make_fund(a, "city"), await make_fund(a, "town", town))
    await pay_grant(a, plain.household_id, "300.00", funds, today)
    await pay_grant(a, plain.household_id, "200.50", funds, today)
    await approved_identification(a, plain.household_id, plain.region_code, today)
    await verification_task(a, marginal.household_id, marginal.region_code)  # still open
    campaign = {
        "name": "边缘户回头看",
        "region_prefix": town,
        "household_types": ["marginal"],
        "deadline": str(today + timedelta(days=20)),
        "launched_by": "县扶贫办",
    }
    r = await a.client.post("/v1/campaigns", json=campaign, headers=a.rw)
    assert r.status_code == 201 and r.json()["generated"] == 1, r.text

    r = await a.client.get(f"/v1/reports/quarterly/{quarter}", params={"town": town}, headers=a.rw)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["status"] == "open" and [t["town_code"] for t in report["towns"]] == [town]
    entry = town_entry(report, town)
    households = entry["households"]
    assert households["total"] == 3
    assert households["by_type"] == {
        "alleviated": 1,
        "unstable": 1,
        "marginal": 1,
        "sudden_hardship": 0,
        "ordinary": 0,
    }
    assert households["by_monitoring_status"] == {"none": 2, "monitored": 1, "eliminated": 0}
    assert households["by_risk_level"] == {"none": 0, "watch": 1, "at_risk": 1, "unassessed": 1}
    assert entry["inclusions"]["total"] == 1
    assert entry["inclusions"]["by_monitoring_type"]["marginal"] == 1
    assert entry["inclusions"]["by_factor"] == {"low_income": 1}
    assert entry["verification_tasks"] == {"opened": 2, "closed": 1, "overdue": 0}
    assert entry["review_tasks"] == {"opened": 1, "closed": 0, "overdue": 0}
    assert (entry["contact"]["due"], entry["contact"]["compliant"]) == (3, 1)
    assert entry["contact"]["rate"] == 0.3333
    assert entry["grants"] == {"count": 2, "amount": "500.50"}
    assert report["totals"]["households"]["total"] == 3  # the county row of what is shown

    # A token for the other town sees only that town, and asking for ours is a 403.
    theirs = a.headers("assistance:read", regions=(other,))
    r = await a.client.get(f"/v1/reports/quarterly/{quarter}", headers=theirs)
    assert [t["town_code"] for t in r.json()["towns"]] == [other]
    r = await a.client.get(
        f"/v1/reports/quarterly/{quarter}", params={"town": town}, headers=theirs
    )
    assert r.status_code == 403


@pytest.mark.integration
async def test_closed_quarter_never_changes_and_late_data_shows_next_quarter(
    a: Assistance,
) -> None:
    town = "441881173"
    today = domain.today()
    current = Quarter.of(today)
    last = current.previous()  # over, so it can be closed
    in_last = last.last_day - timedelta(days=3)
    household = await a.household(region_code=town + "001", town_code=town, type="alleviated")
    late_comer = await a.household(region_code=town + "002", town_code=town, type="alleviated")
    funds = (await make_fund(a, "city"), await make_fund(a, "town", town))
    await pay_grant(a, household.household_id, "100.00", funds, in_last)

    r = await a.client.post(f"/v1/reports/quarterly/{current}/close", headers=a.rw)
    assert r.status_code == 422, r.text  # not over yet
    assert r.json()["errors"][0]["loc"] == ["path", "quarter"]
    town_office = a.headers("assistance:read", "assistance:write", regions=(town,))
    r = await a.client.post(f"/v1/reports/quarterly/{last}/close", headers=town_office)
    assert r.status_code == 403

    r = await a.client.post(
        f"/v1/reports/quarterly/{last}/close", json={"closed_by": "县扶贫办张三"}, headers=a.rw
    )
    assert r.status_code == 201, r.text
    closed = r.json()
    assert closed["closed_by"] == "县扶贫办张三" and closed["report"]["status"] == "closed"
    assert town_entry(closed["report"], town)["grants"] == {"count": 1, "amount": "100.00"}
    r = await a.client.post(f"/v1/reports/quarterly/{last}/close", headers=a.rw)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")

    # Late data dated in the closed quarter: a grant, an identification, and a new task.
    await pay_grant(a, household.household_id, "40.00", funds, in_last)
    await approved_identification(a, late_comer.household_id, late_comer.region_code, in_last)
    await a.household(region_code=town + "003", town_code=town, type="marginal")

    r = await a.client.get(f"/v1/reports/quarterly/{last}", headers=a.rw)
    assert r.status_code == 200
    assert r.json() == closed["report"]  # stored: byte for byte what was closed
    scoped = await a.client.get(
        f"/v1/reports/quarterly/{last}", params={"town": town}, headers=a.rw
    )
    assert scoped.json()["towns"] == [town_entry(closed["report"], town)]

    now = (await a.client.get(f"/v1/reports/quarterly/{current}?town={town}", headers=a.rw)).json()
    entry = town_entry(now, town)
    assert entry["grants"] == {"count": 1, "amount": "40.00"}  # late, so counted here
    assert entry["inclusions"]["total"] == 1
    assert entry["verification_tasks"]["opened"] == 1


@pytest.mark.integration
async def test_closing_twice_at_once_closes_once(a: Assistance) -> None:
    url = "/v1/reports/quarterly/2024Q2/close"
    first, second = await asyncio.gather(
        a.client.post(url, headers=a.rw), a.client.post(url, headers=a.rw)
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409], first.text + second.text
    r = await a.client.get("/v1/reports/quarterly/2024Q2", headers=a.rw)
    assert r.json()["status"] == "closed"


@pytest.mark.integration
async def test_bad_quarters_are_problems(a: Assistance) -> None:
    future = Quarter.of(domain.today()).next()
    for quarter, status in ((str(future), 422), ("2026Q5", 422), ("2026-10", 422)):
        r = await a.client.get(f"/v1/reports/quarterly/{quarter}", headers=a.rw)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["loc"] == ["path", "quarter"]
    r = await a.client.post(f"/v1/reports/quarterly/{future}/close", headers=a.rw)
    assert r.status_code == 422
    r = await a.client.get(
        f"/v1/reports/quarterly/{Quarter.of(domain.today())}", params={"town": "4418"}, headers=a.rw
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "town"]
    r = await a.client.get(
        f"/v1/reports/quarterly/{Quarter.of(domain.today())}",
        headers=a.headers("assistance:write"),
    )
    assert r.status_code == 403


@pytest.mark.integration
async def test_xlsx_has_chinese_headers_and_the_county_total(a: Assistance) -> None:
    town = "441881174"
    await a.household(region_code=town + "001", town_code=town, type="marginal")
    quarter = Quarter.of(domain.today())
    for url in (
        f"/v1/reports/quarterly/{quarter}.xlsx",
        f"/v1/reports/quarterly/{quarter}?format=xlsx",
    ):
        r = await a.client.get(url, headers=a.rw)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == reports.XLSX
        assert "attachment" in r.headers["content-disposition"]
        book = load_workbook(io.BytesIO(r.content), read_only=True)
        rows = list(book["季度动态监测"].iter_rows(values_only=True))
        assert list(rows[0]) == quarterly_xlsx.HEADERS
        assert rows[0][0] == "乡镇代码" and "户类型：边缘易致贫户" in rows[0]
        assert "风险等级：存在突出问题有返贫致贫风险" in rows[0]
        assert "救助发放金额（元）" in rows[0] and "联系达标率" in rows[0]
        assert town in [row[0] for row in rows[1:]]
        assert rows[-1][0] == "全县合计"
        assert book.sheetnames == ["季度动态监测", "纳入与消除原因", "数据质量", "说明"]
