"""The quality service against the real PostgreSQL and Kafka: registry, datasync, risk and
assistance are played by writing their events to the broker with this run's topic
prefix. Lifecycle, sweeps, exceptions, region isolation, the summary and the XLSX."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from openpyxl import load_workbook
from sqlalchemy import select

from backstop.app import Runtime
from backstop.bus import make_producer
from backstop.contracts.assistance import GrantPaid, MeasureData, PlanCreated
from backstop.contracts.datasync import CivilAffairsRecordData, RecordsMatched
from backstop.contracts.registry import (
    HouseholdCreated,
    HouseholdSnapshot,
    HouseholdUpdated,
    IncomeSnapshot,
    MemberRemoved,
    MemberSnapshot,
)
from backstop.contracts.risk import AssessmentChanged
from backstop.events import CloudEvent, make_event, spec_of
from backstop.exports import safe_cell
from backstop.settings import Settings
from services.quality import escalation
from services.quality import models as m
from services.quality.app import create
from services.quality.config import QualitySettings
from tests.support import Stack, read_topic, serve, wait_for

pytestmark = pytest.mark.integration

TOWN_A, TOWN_B = "441881101", "441881102"
VILLAGE_A, VILLAGE_B = TOWN_A + "001", TOWN_B + "003"
THIS_YEAR = datetime.now(UTC).year


@pytest.fixture(scope="module")
async def settings(stack: Stack) -> Settings:
    return await stack.create_database("quality")


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    config = QualitySettings(sweep_interval_s=0.2)
    async with serve(lambda s, background: create(s, background=background, config=config),
                     settings) as served:  # fmt: skip
        yield served


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(settings)
    await p.start()
    yield p
    await p.stop()


def person(relation: str, sex: str, born: date, **kw: Any) -> MemberSnapshot:
    pid = str(uuid.uuid4())
    return MemberSnapshot(person_id=pid, id_hash=f"hash-{pid}", relation=relation,  # type: ignore[arg-type]
                          sex=sex, birth_date=born, schooling="none", **kw)  # type: ignore[arg-type]  # fmt: skip


def household(members: list[MemberSnapshot], *, region: str = VILLAGE_A, version: int = 1,
              household_id: str | None = None) -> HouseholdSnapshot:  # fmt: skip
    total = 12000.0 * len(members)
    return HouseholdSnapshot(
        household_id=household_id or str(uuid.uuid4()),
        region_code=region,
        town_code=region[:9],
        type="alleviated",
        members=members,
        incomes=[IncomeSnapshot(year=THIS_YEAR - 1, total=total, per_capita=12000.0)],
        guarantees={
            "food": "ok",
            "clothing": "ok",
            "basic_medical": "ok",
            "housing": "ok",
            "drinking_water": "ok",
            "compulsory_education": "ok",
        },
        version=version,
    )


def couple() -> list[MemberSnapshot]:
    return [
        person("head", "male", date(1975, 3, 1)),
        person("spouse", "female", date(1977, 5, 1)),
    ]


async def send(producer: AIOKafkaProducer, settings: Settings, payload: Any, subject: str) -> None:
    event = make_event("tests", payload, subject=subject)
    topic = settings.topic(spec_of(event.type).topic)
    await producer.send_and_wait(topic, event.to_bytes(), key=subject.encode())


async def findings(client: httpx.AsyncClient, stack: Stack, household_id: str, *,
                   status: str = "open", regions: tuple[str, ...] = ("*",)) -> dict[str, Any]:  # fmt: skip
    r = await client.get(
        "/v1/quality/findings",
        params={"household_id": household_id, "status": status},
        headers=stack.headers("quality:read", regions=regions),
    )
    assert r.status_code == 200, r.text
    return {f["rule_code"]: f for f in r.json()["items"]}


async def test_rules_catalogue(service: tuple[httpx.AsyncClient, Runtime], stack: Stack) -> None:
    client, _ = service
    r = await client.get("/v1/quality/rules", headers=stack.headers("quality:read"))
    assert r.status_code == 200
    body = r.json()
    assert len(body["items"]) >= 60 and body["ruleset_version"]
    assert {"code": "ID003", "category": "identity", "severity": "error"}.items() <= next(
        i for i in body["items"] if i["code"] == "ID003"
    ).items()
    assert (await client.get("/v1/quality/rules")).status_code == 401
    assert (
        await client.get("/v1/quality/rules", headers=stack.headers("risk:read"))
    ).status_code == 403


async def test_findings_open_on_an_event_and_close_when_fixed(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    client, _ = service
    head, spouse = couple()
    spouse = spouse.model_copy(update={"sex": "male"})
    kid = person("child", "female", date(THIS_YEAR - 10, 1, 1), labor_capacity="full")
    kid = kid.model_copy(update={"schooling": "primary"})
    h = household([head, spouse, kid])
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    found = await wait_for(
        lambda: _has(client, stack, h.household_id, {"ID003", "LS001"}), message="findings"
    )
    assert found["ID003"]["severity"] == "error" and found["ID003"]["fix"]
    assert "10岁" in found["LS001"]["message"]
    # New error-level findings tell the town (notify reminds it), by rule, no household.
    [told] = await read_topic(
        settings,
        "quality.findings",
        match=lambda e: e.subject == TOWN_A and {"ID003", "LS001"} <= e.data["rules"].keys(),
    )
    assert (
        told.type == "backstop.quality.errors.opened.v1"
        and h.household_id not in told.to_bytes().decode()
    )

    fixed = h.model_copy(
        update={
            "version": 2,
            "members": [
                head,
                spouse.model_copy(update={"relation": "other"}),
                kid.model_copy(update={"labor_capacity": "none"}),
            ],
        }
    )
    await send(producer, settings, HouseholdUpdated(household=fixed), h.household_id)
    await wait_for(lambda: _lacks(client, stack, h.household_id, {"ID003", "LS001"}),
                   message="findings closed")  # fmt: skip
    closed = await findings(client, stack, h.household_id, status="closed")
    assert {"ID003", "LS001"} <= closed.keys()
    assert closed["ID003"]["closed_at"] is not None

    # A replay of version 1 changes nothing: version 3 (which adds a 115-year-old, ID014)
    # comes after it on the same partition, and the two closed findings stay closed.
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    old = person("parent", "female", date(THIS_YEAR - 115, 1, 1), labor_capacity="none")
    v3 = fixed.model_copy(update={"version": 3, "members": [*fixed.members, old]})
    await send(producer, settings, HouseholdUpdated(household=v3), h.household_id)
    now = await wait_for(lambda: _has(client, stack, h.household_id, {"ID014"}), message="v3")
    assert not {"ID003", "LS001"} & now.keys()


async def test_the_national_export_fields_reach_the_rules(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    """劳动技能, 健康状况 and 养老保险 from registry's snapshot: a healthy 45-year-old whose
    劳动技能 is 丧失劳动力 (LS012) and who has no pension insurance (GU015)."""
    client, _ = service
    head, spouse = couple()
    spouse = spouse.model_copy(
        update={"health_status": "healthy", "labor_skill": "lost", "labor_capacity": "none",
                "pension_insurance": False, "critical_illness_insurance": False}
    )  # fmt: skip
    h = household([head, spouse])
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    found = await wait_for(
        lambda: _has(client, stack, h.household_id, {"LS012", "GU015", "GU016"}),
        message="findings",
    )
    assert found["LS012"]["evidence"]["person_ids"] == [spouse.person_id]
    assert found["GU015"]["evidence"]["person_ids"] == [spouse.person_id]
    assert found["GU016"]["evidence"]["person_ids"] == [spouse.person_id]


async def _has(client: httpx.AsyncClient, stack: Stack, hid: str, codes: set[str]) -> Any:
    found = await findings(client, stack, hid)
    return found if codes <= found.keys() else None


async def _lacks(client: httpx.AsyncClient, stack: Stack, hid: str, codes: set[str]) -> bool:
    return not codes & (await findings(client, stack, hid)).keys()


async def test_department_and_risk_events_reach_the_rules(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    client, _ = service
    head, spouse = couple()
    h = household([head, spouse])
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    # A 低保 grant to a member later removed as deceased (ID018), and an income with no
    # transfer income while the head gets 低保 (DE001).
    grants = RecordsMatched(
        household_id=h.household_id, source="civil_affairs", batch_id="b1",
        period=f"{THIS_YEAR}-01",
        records=[
            CivilAffairsRecordData(record_id="ca-1", id_hash=head.id_hash, kind="dibao",
                                   status="granted", amount=500.1, start_on=date.today()),
            CivilAffairsRecordData(record_id="ca-2", id_hash=spouse.id_hash, kind="dibao",
                                   status="granted", amount=500.2, start_on=date.today()),
        ],
    )  # fmt: skip
    await send(producer, settings, grants, h.household_id)
    removed = h.model_copy(update={"version": 2, "members": [head]})
    await send(
        producer, settings,
        MemberRemoved(household=removed, person_id=spouse.person_id, id_hash=spouse.id_hash,
                      reason="死亡"),
        h.household_id,
    )  # fmt: skip
    await send(
        producer, settings,
        AssessmentChanged(household_id=h.household_id, region_code=VILLAGE_A, level="watch",
                          previous_level=None, score=40, previous_score=None, factors=[],
                          per_capita_income=12000.0, income_line=7800.0, policy_version=1,
                          assessed_at=datetime.now(UTC)),
        h.household_id,
    )  # fmt: skip
    found = await wait_for(
        lambda: _has(client, stack, h.household_id, {"DE001", "IN003"}), message="findings"
    )
    # One member now, 24000 over one: the per-capita arithmetic is off (IN003).
    assert "24000.00元÷1人" in found["IN003"]["message"]
    assert "低保" in found["DE001"]["message"]


async def test_an_at_risk_spell_keeps_its_start(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
) -> None:  # fmt: skip
    _, runtime = service
    hid = str(uuid.uuid4())
    start = datetime(2026, 9, 1, 2, tzinfo=UTC)

    def assessed(level: str, days: int) -> AssessmentChanged:
        return AssessmentChanged(household_id=hid, region_code=VILLAGE_A, level=level,  # type: ignore[arg-type]
                                 previous_level=None, score=70, previous_score=None, factors=[],
                                 per_capita_income=None, income_line=7800.0, policy_version=1,
                                 assessed_at=start + timedelta(days=days))  # fmt: skip

    # at_risk, still at_risk, then a stale (older) watch that must change nothing.
    for payload in (assessed("at_risk", 0), assessed("at_risk", 20), assessed("watch", 10)):
        await send(producer, settings, payload, hid)

    async def spell() -> Any:
        async with runtime.sessions() as session:
            row = (
                await session.execute(
                    select(m.risk.c.level, m.risk.c.at_risk_since, m.risk.c.assessed_at).where(
                        m.risk.c.household_id == hid
                    )
                )
            ).one_or_none()
        return row if row is not None and row.assessed_at == start + timedelta(days=20) else None

    row = await wait_for(spell, message="assessments kept")
    assert (row.level, row.at_risk_since) == ("at_risk", date(2026, 9, 1))


async def test_help_given_reaches_the_rules(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    client, _ = service
    h = household(couple()).model_copy(update={"type": "ordinary"})
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    today = date.today()
    plan = PlanCreated(
        plan_id=str(uuid.uuid4()), household_id=h.household_id, region_code=VILLAGE_A,
        tier="marginal", year=today.year,
        measures=[MeasureData(measure_id=str(uuid.uuid4()), category="industry",
                              start_on=today, end_on=today, amount=Decimal("5000.10"))],
    )  # fmt: skip
    grant = GrantPaid(grant_id=str(uuid.uuid4()), household_id=h.household_id,
                      region_code=VILLAGE_A, amount=Decimal("800.30"), granted_on=today)  # fmt: skip
    for payload in (plan, grant, grant):  # the grant twice: counted once
        await send(producer, settings, payload, h.household_id)
    found = await wait_for(
        lambda: _has(client, stack, h.household_id, {"MF001", "MF004"}), message="findings"
    )
    assert "产业帮扶" in found["MF001"]["message"]
    assert "1笔，合计800.30元" in found["MF004"]["message"]


async def test_accepted_exception_stays_closed_through_sweeps(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    client, _ = service
    elder = person("parent", "female", date(1950, 1, 1), labor_capacity="full")
    h = household([*couple(), elder])
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    found = await wait_for(lambda: _has(client, stack, h.household_id, {"LS004"}), message="LS004")
    fid = found["LS004"]["id"]
    body = {"accepted_by": "张三", "reason": "仍在务农，入户核实属实"}
    town = stack.headers("quality:write", "quality:read", regions=[TOWN_A])
    r = await client.post(f"/v1/quality/findings/{fid}/accept", json=body, headers=town)
    assert r.status_code == 403  # a town may not accept exceptions
    county = stack.headers("quality:write", "quality:read", regions=["441881"])
    bad = await client.post(f"/v1/quality/findings/{fid}/accept", json={"accepted_by": "x"},
                            headers=county)  # fmt: skip
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    r = await client.post(f"/v1/quality/findings/{fid}/accept", json=body, headers=county)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted" and r.json()["accepted_by"] == "张三"
    again = await client.post(f"/v1/quality/findings/{fid}/accept", json=body, headers=county)
    assert again.status_code == 409

    r = await client.post("/v1/quality/sweeps", json={}, headers=town)
    assert r.status_code == 403
    r = await client.post("/v1/quality/sweeps", json={}, headers=county)
    assert r.status_code == 202, r.text
    sweep_id = r.json()["id"]

    async def done() -> Any:
        got = await client.get(f"/v1/quality/sweeps/{sweep_id}", headers=county)
        return got.json() if got.json()["status"] == "done" else None

    sweep = await wait_for(done, message="sweep done")
    assert sweep["households"] >= 1
    assert "LS004" not in await findings(client, stack, h.household_id)
    accepted = await findings(client, stack, h.household_id, status="accepted")
    assert accepted["LS004"]["id"] == fid and accepted["LS004"]["accepted_reason"] == body["reason"]

    # A later change re-checks the household (a second head, ID002, shows it was): the
    # exception stays accepted and nothing re-opens.
    extra_head = person("head", "male", date(1980, 1, 1))
    v2 = h.model_copy(update={"version": 2, "members": [*h.members, extra_head]})
    await send(producer, settings, HouseholdUpdated(household=v2), h.household_id)
    now = await wait_for(lambda: _has(client, stack, h.household_id, {"ID002"}), message="v2")
    assert "LS004" not in now
    assert "LS004" in await findings(client, stack, h.household_id, status="accepted")


async def test_a_sweep_sends_its_summary_with_the_trend(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    """Each sweep's end leaves as one `sweep.completed` event (the quarterly report's 数据质量
    section): counts by town × category × severity and the change since the sweep before."""
    client, _ = service
    town, village = "441881109", "441881109002"
    elder = household([*couple(), person("parent", "female", date(1950, 1, 1),
                                         labor_capacity="full")], region=village)  # fmt: skip
    headless = household([person("other", "male", date(1970, 1, 1))], region=village)
    for h in (elder, headless):
        await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    await wait_for(lambda: _has(client, stack, elder.household_id, {"LS004"}), message="LS004")
    await wait_for(lambda: _has(client, stack, headless.household_id, {"ID001"}), message="ID001")
    county = stack.headers("quality:write", "quality:read", regions=["441881"])

    async def sweep() -> CloudEvent:
        r = await client.post("/v1/quality/sweeps", json={"region_prefix": town}, headers=county)
        assert r.status_code == 202, r.text
        sweep_id = r.json()["id"]
        [event] = await read_topic(
            settings, "quality.findings",
            match=lambda e: e.type == "backstop.quality.sweep.completed.v1"
            and e.data["sweep_id"] == sweep_id,
        )  # fmt: skip
        return event

    def cells(event: CloudEvent) -> dict[tuple[str, str], dict[str, Any]]:
        assert {c["town_code"] for c in event.data["counts"]} == {town}
        return {(c["category"], c["severity"]): c for c in event.data["counts"]}

    first = await sweep()
    assert first.data["region_prefix"] == town and first.data["households"] == 2
    assert first.data["categories"]["identity"] == "身份与家庭结构"
    assert cells(first)[("identity", "error")] == {
        "town_code": town, "category": "identity", "severity": "error",
        "open": 1, "accepted": 0, "opened": 1, "closed": 0, "previous_open": None,
    }  # fmt: skip
    assert cells(first)[("labour_schooling", "warning")]["open"] == 1
    raw = first.to_bytes().decode()
    assert elder.household_id not in raw and headless.household_id not in raw

    # The head is recorded and the elder's labour accepted as an exception: the next
    # sweep shows one closed, one accepted, and both down from one open finding.
    fixed = headless.model_copy(
        update={"version": 2, "members": [headless.members[0].model_copy(update={"relation": "head"})]}
    )  # fmt: skip
    await send(producer, settings, HouseholdUpdated(household=fixed), headless.household_id)
    await wait_for(lambda: _lacks(client, stack, headless.household_id, {"ID001"}), message="fix")
    fid = (await findings(client, stack, elder.household_id))["LS004"]["id"]
    r = await client.post(f"/v1/quality/findings/{fid}/accept",
                          json={"accepted_by": "张三", "reason": "仍在务农"}, headers=county)  # fmt: skip
    assert r.status_code == 200, r.text

    second = await sweep()
    assert second.data["previous_sweep_id"] == first.data["sweep_id"]
    now = cells(second)
    identity, labour = now[("identity", "error")], now[("labour_schooling", "warning")]
    assert (identity["open"], identity["closed"], identity["previous_open"]) == (0, 1, 1)
    assert (labour["open"], labour["accepted"], labour["previous_open"]) == (0, 1, 1)


async def test_long_open_errors_are_escalated_once_a_day(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    client, runtime = service
    h = household([person("other", "male", date(1970, 1, 1))], region=VILLAGE_B)
    await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    await wait_for(lambda: _has(client, stack, h.household_id, {"ID001"}), message="ID001")
    # Eight days on, at 10:00 county time: the town's error is a week old.
    later = datetime.now(UTC).replace(hour=2) + timedelta(days=8)
    assert await escalation.escalate_overdue(runtime.sessions, days=7, now=later) >= 1
    assert await escalation.escalate_overdue(runtime.sessions, days=7, now=later) == 0
    [event] = await read_topic(
        settings, "quality.findings",
        match=lambda e: e.type == "backstop.quality.errors.overdue.v1" and e.subject == TOWN_B,
    )  # fmt: skip
    assert event.data["count"] >= 1 and event.data["days"] == 7


async def test_town_tokens_see_only_their_town(
    service: tuple[httpx.AsyncClient, Runtime], producer: AIOKafkaProducer, settings: Settings,
    stack: Stack,
) -> None:  # fmt: skip
    client, _ = service
    a = household([person("other", "male", date(1970, 1, 1))], region=VILLAGE_A)
    b = household([person("other", "male", date(1970, 1, 1))], region=VILLAGE_B)
    for h in (a, b):
        await send(producer, settings, HouseholdCreated(household=h), h.household_id)
    await wait_for(lambda: _has(client, stack, b.household_id, {"ID001"}), message="B's finding")
    await wait_for(lambda: _has(client, stack, a.household_id, {"ID001"}), message="A's finding")

    town_a = stack.headers("quality:read", regions=[TOWN_A])
    r = await client.get("/v1/quality/findings", params={"rule": "ID001", "limit": 1},
                         headers=town_a)  # fmt: skip
    seen = []
    while True:
        assert r.status_code == 200
        seen += r.json()["items"]
        if not r.json()["next_cursor"]:
            break
        r = await client.get("/v1/quality/findings", headers=town_a,
                             params={"rule": "ID001", "limit": 1, "cursor": r.json()["next_cursor"]})  # fmt: skip
    assert seen and all(f["town_code"] == TOWN_A for f in seen)
    assert a.household_id in {f["household_id"] for f in seen}
    assert b.household_id not in {f["household_id"] for f in seen}
    fid_b = (await findings(client, stack, b.household_id))["ID001"]["id"]
    assert (await client.get(f"/v1/quality/findings/{fid_b}", headers=town_a)).status_code == 404
    asked = await client.get("/v1/quality/findings", params={"region": TOWN_B}, headers=town_a)
    assert asked.status_code == 200 and asked.json()["items"] == []

    summary = (await client.get("/v1/quality/summary", headers=town_a)).json()
    assert [t["town_code"] for t in summary["towns"]] == [TOWN_A]
    assert summary["towns"][0]["by_category"]["identity"] >= 1

    assert (await client.get(f"/v1/quality/rectification/{TOWN_B}.xlsx",
                             headers=town_a)).status_code == 403  # fmt: skip
    r = await client.get(f"/v1/quality/rectification/{TOWN_A}.xlsx", headers=town_a)
    assert r.status_code == 200
    sheet = load_workbook(io.BytesIO(r.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:5] == ("序号", "乡镇代码", "村代码", "户ID", "规则编号")
    mine = [row for row in rows[1:] if row[3] == a.household_id]
    assert mine and mine[0][8] == "在户成员中指定一名户主"
    assert all(row[1] == TOWN_A for row in rows[1:])


async def test_bad_requests_are_problems(
    service: tuple[httpx.AsyncClient, Runtime], stack: Stack
) -> None:
    client, _ = service
    h = stack.headers("quality:read", "quality:write")
    for method, url, kw in (
        ("GET", "/v1/quality/findings", {"params": {"cursor": "nonsense"}}),
        ("GET", "/v1/quality/findings", {"params": {"region": "44x"}}),
        ("GET", "/v1/quality/findings", {"params": {"severity": "fatal"}}),
        ("GET", "/v1/quality/findings", {"params": {"limit": 100000}}),
        ("POST", "/v1/quality/sweeps", {"json": {"region_prefix": "abc"}}),
        ("GET", "/v1/quality/rectification/12.xlsx", {}),
    ):
        r = await client.request(method, url, headers=h, **kw)
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/quality/findings/99999999", headers=h)).status_code == 404


def test_cells_that_would_be_formulas_are_escaped() -> None:
    assert safe_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert safe_cell("+1") == "'+1" and safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("户主") == "户主" and safe_cell(3) == 3
