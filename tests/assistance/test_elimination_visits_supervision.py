"""Elimination with its guard, visits and contact compliance, plans, supervision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import col

from backstop.contracts.assistance import FindingObserved, RectificationOverdue, RiskEliminated
from backstop.contracts.registry import ContactSnapshot, IncomeSnapshot, MemberSnapshot
from backstop.db import unit_of_work
from services.assistance import domain, supervision
from services.assistance.common import claim_once
from services.assistance.models import SupervisionIssue, utcnow
from tests.assistance.conftest import TOWN, VILLAGE, Assistance, backdate_case
from tests.support import read_topic

pytestmark = pytest.mark.integration


async def run_procedure(a: Assistance, case_id: str) -> dict:
    today = domain.today()
    await backdate_case(a.settings.db_url, case_id, days=9)
    steps = [
        (
            "appraisal",
            {
                "held_on": str(today - timedelta(days=8)),
                "chaired_by": "村支书",
                "attendance": 20,
                "votes_for": 18,
                "votes_against": 0,
            },
        ),
        (
            "notice",
            {
                "start_on": str(today - timedelta(days=7)),
                "end_on": str(today - timedelta(days=1)),
                "posted_at": "村务公开栏",
                "recorded_by": "村文书",
            },
        ),
        ("town-review", {"approved": True, "reviewed_by": "镇长", "reviewed_on": str(today)}),
        (
            "county-approval",
            {"approved": True, "reviewed_by": "县扶贫办", "reviewed_on": str(today)},
        ),
    ]
    for path, body in steps:
        r = await a.client.post(f"/v1/cases/{case_id}/{path}", json=body, headers=a.rw)
        assert r.status_code == 200, (path, r.text)
    return r.json()


async def test_assisted_elimination_guard_names_every_failed_rule(a: Assistance) -> None:
    today = domain.today()
    household = await a.household(
        type="unstable",
        monitoring_status="monitored",
        monitoring_since=today - timedelta(days=60),
        incomes=[IncomeSnapshot(year=today.year - 1, total=9000, per_capita=3000)],
        guarantees={"housing": "prominent_issue"},
        contacts=[],
        members=[
            MemberSnapshot(
                person_id="p1",
                id_hash="0" * 64,
                relation="head",
                sex="male",
                birth_date=today.replace(year=1940),
                labor_capacity="none",
            )
        ],
    )
    body = {"household_id": household.household_id, "method": "assisted", "requested_by": "镇干部"}
    r = await a.client.post("/v1/eliminations", json=body, headers=a.rw)
    assert r.status_code == 422
    rules = {e["loc"][1] for e in r.json()["errors"]}
    assert rules == {"min_months", "income", "guarantees", "labor", "contact"}


async def test_assisted_elimination_passes_and_emits_on_approval(a: Assistance) -> None:
    today = domain.today()
    household = await a.household(
        type="unstable",
        monitoring_status="monitored",
        monitoring_since=today - timedelta(days=250),
        incomes=[
            IncomeSnapshot(year=today.year - 1, total=36000, per_capita=12000),
            IncomeSnapshot(year=today.year - 2, total=30000, per_capita=10000),
        ],
        guarantees={"housing": "ok"},
        contacts=[ContactSnapshot(role="leader", name="张镇长", phone="13900000000")],
    )
    hid = household.household_id
    body = {"household_id": hid, "method": "assisted", "requested_by": "镇干部"}
    r = await a.client.post("/v1/eliminations", json=body, headers=a.rw)
    assert r.status_code == 201, r.text
    again = await a.client.post("/v1/eliminations", json=body, headers=a.rw)
    assert again.status_code == 409
    case = await run_procedure(a, r.json()["id"])
    assert case["status"] == "approved"
    [event] = await read_topic(a.settings, "assistance.decisions", match=lambda e: e.subject == hid)
    eliminated = event.payload()
    assert isinstance(eliminated, RiskEliminated) and eliminated.method == "assisted"


async def test_natural_elimination_records_its_reason(a: Assistance) -> None:
    hid = (await a.household(monitoring_status="monitored")).household_id
    body = {"household_id": hid, "method": "natural", "requested_by": "村干部"}
    r = await a.client.post("/v1/eliminations", json=body, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "reason"]
    r = await a.client.post(
        "/v1/eliminations", json={**body, "reason": "户主去世，家庭户已注销"}, headers=a.rw
    )
    assert r.status_code == 201
    await run_procedure(a, r.json()["id"])
    [event] = await read_topic(a.settings, "assistance.decisions", match=lambda e: e.subject == hid)
    eliminated = event.payload()
    assert isinstance(eliminated, RiskEliminated)
    assert eliminated.method == "natural" and eliminated.reason == "户主去世，家庭户已注销"


async def test_visits_feed_findings_and_compliance(a: Assistance) -> None:
    town = "441881177"
    contacted = await a.household(region_code=town + "001", town_code=town, type="marginal")
    missed = await a.household(
        region_code=town + "002",
        town_code=town,
        monitoring_status="monitored",
        contacts=[
            ContactSnapshot(role="town_leader", name="赵书记", phone="1"),
            ContactSnapshot(role="work_team", name="钱队员", phone="2"),
        ],
    )
    # Seed 二(三): 对脱贫户（含监测户）、边缘户…每月至少开展一次走访 — a 脱贫户 is due too.
    stable = await a.household(region_code=town + "003", town_code=town, type="alleviated")
    today = domain.today()
    child = "child-1"
    r = await a.client.post(
        "/v1/visits",
        json={
            "household_id": contacted.household_id,
            "channel": "home",
            "visitor": "李干部",
            "visited_on": str(today),
            "findings": "孩子辍学在家",
            "guarantees": {"compulsory_education": "prominent_issue"},
            "schooling": {child: "out_of_school"},
        },
        headers=a.rw,
    )
    assert r.status_code == 201, r.text
    r = await a.client.post(
        "/v1/visits",
        json={
            "household_id": missed.household_id,
            "channel": "fax",
            "visitor": "x",
            "visited_on": str(today),
            "findings": "x",
        },
        headers=a.rw,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "channel"]
    visit = {"channel": "phone", "visited_on": str(today), "findings": "电话了解生产生活情况"}
    # Someone who is not the household's 重点联系人 or 帮扶责任人: logged, not counted.
    r = await a.client.post(
        "/v1/visits",
        json={**visit, "household_id": stable.household_id, "visitor": "路过的人"},
        headers=a.rw,
    )
    assert r.status_code == 201, r.text
    # Back-dating is bounded (31 days by default).
    r = await a.client.post(
        "/v1/visits",
        json={**visit, "household_id": stable.household_id, "visitor": "李干部",
              "visited_on": str(today - timedelta(days=40))},
        headers=a.rw,
    )  # fmt: skip
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "visited_on"]
    period = today.strftime("%Y-%m")
    r = await a.client.get(
        "/v1/visits/compliance", params={"period": period, "region": town}, headers=a.rw
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["due"], report["contacted"], report["not_contacted"]) == (3, 1, 2)
    assert report["visits_not_counted"] == 1
    assert report["by_town"] == [{"town_code": town, "due": 3, "contacted": 1, "missing": 2}]
    # The monitored household is charged to its 镇党委政府负责人, not to the work-team member.
    charged = {c["contact"]: c["missing"] for c in report["by_contact"]}
    assert charged["赵书记"] == 1 and "钱队员" not in charged
    assert report["next_cursor"] is None
    assert {h["household_id"] for h in report["households"]} == {
        missed.household_id,
        stable.household_id,
    }
    r = await a.client.get("/v1/visits/compliance", params={"period": "2026-13"}, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "period"]
    [event] = await read_topic(
        a.settings, "assistance.findings", match=lambda e: e.subject == contacted.household_id
    )
    finding = event.payload()
    assert isinstance(finding, FindingObserved)
    assert finding.origin == "visit" and finding.schooling == {child: "out_of_school"}
    assert finding.guarantees == {"compulsory_education": "prominent_issue"}
    [visit] = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: (
            e.subject == contacted.household_id
            and e.type == "backstop.assistance.visit.recorded.v1"
        ),
    )
    assert visit.data["visited_on"] == str(today) and visit.data["channel"] == "home"


async def test_plans_follow_the_catalogue_and_tiers(a: Assistance) -> None:
    today = domain.today()
    hid = (
        await a.household(
            monitoring_status="monitored", monitoring_since=today - timedelta(days=45)
        )
    ).household_id
    r = await a.client.get("/v1/plans/gaps", params={"region": VILLAGE}, headers=a.rw)
    assert hid in {g["household_id"] for g in r.json()["items"]}
    measure = {
        "category": "public_welfare_job",
        "description": "村保洁员",
        "start_on": str(today),
        "end_on": str(today + timedelta(days=365)),
        "amount": "6000",
        "responsible_unit": "镇政府",
    }
    plan = {
        "household_id": hid,
        "tier": "not_enjoying",
        "year": today.year,
        "created_by": "驻村工作队",
        "measures": [measure],
    }
    # A plan's tier comes from the household, not from the client.
    r = await a.client.post("/v1/plans", json=plan, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "tier"]
    r = await a.client.post("/v1/plans", json={**plan, "tier": None}, headers=a.rw)
    assert r.status_code == 201, r.text
    assert r.json()["measures"][0]["label"] == "公益性岗位" and r.json()["tier"] == "monitored"
    [event] = await read_topic(
        a.settings,
        "assistance.decisions",
        match=lambda e: e.subject == hid and e.type == "backstop.assistance.plan.created.v1",
    )
    assert event.data["measures"][0]["category"] == "public_welfare_job"
    assert event.data["measures"][0]["amount"] == "6000"  # an exact decimal, as text
    r = await a.client.get("/v1/plans/gaps", params={"region": VILLAGE}, headers=a.rw)
    assert hid not in {g["household_id"] for g in r.json()["items"]}
    catalogue = (await a.client.get("/v1/measures", headers=a.rw)).json()
    assert len(catalogue["measures"]) == 11 and len(catalogue["tiers"]) == 4


async def test_a_former_poor_household_keeps_its_policies(a: Assistance) -> None:
    """Seed 三(三)1: 坚持脱贫不脱政策…对脱贫户持续推动产业、就业、金融、教育、健康、安全住房
    和社会扶贫等政策 — a 不享受政策脱贫户 still gets housing, education and health."""
    today = domain.today()
    hid = (await a.household(type="alleviated", policy_enjoying=False)).household_id
    measures = [
        {
            "category": category,
            "description": "脱贫不脱政策",
            "start_on": str(today),
            "end_on": str(today + timedelta(days=365)),
            "amount": "1000",
            "responsible_unit": "镇政府",
        }
        for category in ("housing", "education", "health", "industry", "microcredit")
    ]
    plan = {"household_id": hid, "year": today.year, "created_by": "镇干部"}
    r = await a.client.post("/v1/plans", json={**plan, "measures": measures}, headers=a.rw)
    assert r.status_code == 201, r.text
    assert r.json()["tier"] == "not_enjoying"
    # What the seed does not keep is still differentiated: 低保/特困 is for 监测户.
    social = {**measures[0], "category": "social_security"}
    r = await a.client.post("/v1/plans", json={**plan, "measures": [social]}, headers=a.rw)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "measures", 0, "category"]
    ordinary = (await a.household(type="ordinary")).household_id
    r = await a.client.post(
        "/v1/plans", json={**plan, "household_id": ordinary, "measures": measures}, headers=a.rw
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "household_id"]


async def test_supervision_issue_evidence_overdue_and_accountability(a: Assistance) -> None:
    today = domain.today()
    issue = {
        "region_code": TOWN,
        "source": "public_report",
        "summary": "走访记录不实",
        "responsible_unit": "某镇扶贫办",
        "deadline": str(today + timedelta(days=3)),
        "found_on": str(today),
        "reported_by": "市督导组",
    }
    r = await a.client.post("/v1/supervision/issues", json=issue, headers=a.rw)
    assert r.status_code == 201, r.text
    issue_id = r.json()["id"]
    r = await a.client.post(
        f"/v1/supervision/issues/{issue_id}/close", json={"verified_by": "督导组"}, headers=a.rw
    )
    assert r.status_code == 409  # no evidence yet
    assert (
        await supervision.emit_overdue_rectifications(
            a.runtime.sessions, on=today + timedelta(days=10)
        )
        >= 1
    )
    assert (
        await supervision.emit_overdue_rectifications(
            a.runtime.sessions, on=today + timedelta(days=10)
        )
        == 0
    )
    # 限时整改: reminded again after rectification_repeat_days (7) until closed.
    later = utcnow() + timedelta(days=7, minutes=1)
    async with unit_of_work(a.runtime.sessions) as session:
        again = await claim_once(
            session,
            SupervisionIssue,
            "overdue_emitted_at",
            col(SupervisionIssue.id) == issue_id,
            at=later,
            again_after=timedelta(days=7),
        )
    assert [i.id for i in again] == [issue_id]
    events = await read_topic(
        a.settings,
        "assistance.tasks",
        match=lambda e: (
            e.type.startswith("backstop.assistance.rectification.")
            and e.data["issue_id"] == issue_id
        ),
        min_count=2,
    )
    # 发现问题及时反馈镇村: raised when found, then overdue.
    assert [e.type.split(".")[-2] for e in events] == ["raised", "overdue"]
    assert isinstance(events[1].payload(), RectificationOverdue)
    assert events[1].data["reminder"] == 2  # a week past its deadline: the second round
    r = await a.client.post(
        f"/v1/supervision/issues/{issue_id}/evidence",
        json={
            "submitted_by": "镇扶贫办",
            "description": "已补录走访并整改",
            "attachment_url": "https://x/1.jpg",
        },
        headers=a.rw,
    )
    assert r.status_code == 201 and len(r.json()["evidence"]) == 1
    r = await a.client.post(
        f"/v1/supervision/issues/{issue_id}/close", json={"verified_by": "督导组"}, headers=a.rw
    )
    assert r.status_code == 200 and r.json()["status"] == "rectified"
    assert r.json()["days_late"] == 0  # closed before its deadline
    r = await a.client.post(
        "/v1/supervision/accountability",
        json={
            "issue_id": issue_id,
            "region_code": TOWN,
            "person_name": "某干部",
            "unit": "某镇",
            "action": "interview",
            "reason": "走访不实",
            "decided_on": str(today),
            "decided_by": "市纪委",
        },
        headers=a.rw,
    )
    assert r.status_code == 201, r.text
    bad = {**issue, "deadline": str(today - timedelta(days=1))}
    r = await a.client.post("/v1/supervision/issues", json=bad, headers=a.rw)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "deadline"]
    outside = a.headers("assistance:read", "assistance:write", regions=("441882",))
    r = await a.client.post("/v1/supervision/issues", json=issue, headers=outside)
    assert r.status_code == 403


def test_lateness_is_kept_when_an_issue_closes_after_its_deadline() -> None:
    # Seed 四(三): 限时整改到位 — closing late does not erase that it was late.
    issue = SupervisionIssue(
        region_code=TOWN, source="inspection", summary="s", responsible_unit="u",
        deadline=date(2026, 11, 1), found_on=date(2026, 10, 20), reported_by="r",
    )  # fmt: skip
    assert supervision.days_late(issue, date(2026, 11, 1)) == 0
    assert supervision.days_late(issue, date(2026, 11, 4)) == 3  # open, overdue
    issue.rectified_at = datetime(2026, 11, 6, 2, 0, tzinfo=UTC)  # 10:00 in China
    assert supervision.days_late(issue, date(2026, 12, 31)) == 5  # kept after closing
    issue.rectified_at = datetime(2026, 10, 30, tzinfo=UTC)
    assert supervision.days_late(issue, date(2026, 12, 31)) == 0
