"""The risk service against the real PostgreSQL and Kafka: registry and datasync are
played by writing their events to the broker with this run's topic prefix."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text

from backstop.app import Runtime
from backstop.bus import make_producer
from backstop.contracts.datasync import (
    CivilAffairsRecordData,
    DisasterRecordData,
    EducationRecordData,
    MedicalRecordData,
    RecordsMatched,
)
from backstop.contracts.registry import (
    HouseholdCreated,
    HouseholdSnapshot,
    HouseholdUpdated,
    IncomeSnapshot,
    MemberSnapshot,
)
from backstop.contracts.risk import ALERTS_TOPIC, ASSESSMENTS_TOPIC
from backstop.db import make_engine, make_session_factory, unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.migrate import upgrade
from backstop.settings import Settings
from backstop.tables import outbox as outbox_table
from services.risk import models as m
from services.risk import policies, reactions
from services.risk.app import create
from services.risk.domain import Policy
from tests.support import Stack, read_topic, serve, wait_for

pytestmark = pytest.mark.integration

VILLAGE = "441881101001"
OTHER_TOWN_VILLAGE = "441881102003"
RAISED = "backstop.risk.alert.raised.v1"
CLEARED = "backstop.risk.alert.cleared.v1"
RENEWED = "backstop.risk.alert.renewed.v1"


@pytest.fixture(scope="module")
async def settings(stack: Stack) -> Settings:
    return await stack.create_database("risk")


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async with serve(create, settings) as served:
        yield served


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = make_producer(settings)
    await p.start()
    yield p
    await p.stop()


def snapshot(
    household_id: str, *, version: int = 1, total: float = 45_000, region: str = VILLAGE
) -> HouseholdSnapshot:
    return HouseholdSnapshot(
        household_id=household_id,
        region_code=region,
        town_code=region[:9],
        type="alleviated",
        members=[
            MemberSnapshot(
                person_id=str(uuid.uuid4()),
                id_hash="a" * 64,
                relation="head",
                sex="male",
                birth_date=date(1968, 4, 2),
            ),
            MemberSnapshot(
                person_id=str(uuid.uuid4()),
                id_hash="b" * 64,
                relation="spouse",
                sex="female",
                birth_date=date(1970, 6, 9),
            ),
        ],
        incomes=[IncomeSnapshot(year=2025, total=total, per_capita=total / 2)],
        guarantees={"food": "ok", "housing": "ok"},
        version=version,
    )


def medical_batch(household_id: str, amount: float, record_id: str) -> RecordsMatched:
    settled = date.today() - timedelta(days=20)
    return RecordsMatched(
        household_id=household_id,
        source="medical",
        batch_id=f"yb-{record_id}",
        period=settled.strftime("%Y-%m"),
        records=[
            MedicalRecordData(
                record_id=record_id,
                id_hash="a" * 64,
                settled_on=settled,
                total_cost=amount * 2,
                insurance_paid=amount,
                assistance_paid=0,
                out_of_pocket=amount,
            )
        ],
    )


async def send(
    producer: AIOKafkaProducer, settings: Settings, topic: str, event: CloudEvent
) -> CloudEvent:
    await producer.send_and_wait(
        settings.topic(topic), value=event.to_bytes(), key=(event.subject or "").encode()
    )
    return event


async def send_snapshot(
    producer: AIOKafkaProducer, settings: Settings, s: HouseholdSnapshot, *, created: bool = True
) -> CloudEvent:
    payload = HouseholdCreated(household=s) if created else HouseholdUpdated(household=s)
    event = make_event("registry", payload, subject=s.household_id)
    return await send(producer, settings, "registry.households", event)


async def send_records(
    producer: AIOKafkaProducer, settings: Settings, batch: RecordsMatched, cid: str | None = None
) -> CloudEvent:
    event = make_event("datasync", batch, subject=batch.household_id, correlation_id=cid)
    return await send(producer, settings, "datasync.records", event)


async def risk_of(client: httpx.AsyncClient, stack: Stack, household_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/households/{household_id}/risk", headers=stack.headers("risk:read"))
    if r.status_code != 200:
        return {}
    body = dict(r.json())
    # Built on the driver connection and serialised by orjson: exactly its model's JSON.
    assert m.RiskPublic.model_validate(body).model_dump(mode="json") == body
    return body


async def level_is(
    client: httpx.AsyncClient, stack: Stack, household_id: str, level: str
) -> dict[str, Any] | None:
    body = await risk_of(client, stack, household_id)
    return body if body.get("level") == level else None


async def history(runtime: Runtime, household_id: str) -> int:
    async with runtime.sessions() as session:
        n = await session.scalar(
            select(func.count()).where(m.assessments.c.household_id == household_id)
        )
    return int(n or 0)


async def test_a_medical_batch_makes_the_household_at_risk_and_alerts_once(
    stack: Stack,
    settings: Settings,
    service: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
) -> None:
    client, runtime = service
    hid = str(uuid.uuid4())
    await send_snapshot(producer, settings, snapshot(hid))
    first = await wait_for(lambda: level_is(client, stack, hid, "none"), message="first score")
    assert first["score"] == 0 and first["policy_version"] >= 1

    cid = f"yb-batch-{uuid.uuid4().hex[:6]}"
    event = await send_records(producer, settings, medical_batch(hid, 40_000, f"m-{hid}"), cid)
    risk = await wait_for(lambda: level_is(client, stack, hid, "at_risk"), message="at_risk")
    assert [f["code"] for f in risk["factors"]] == ["illness"]
    assert risk["factors"][0]["evidence"] == (
        "近12个月医疗自付 40,000 元（1 条记录），占家庭年收入 45,000 元的 89%，超过预警线 50%"
    )
    assert risk["factors"][0]["sources"] == [f"medical:m-{hid}"]
    assert risk["level_label"] == "存在突出问题有返贫致贫风险"

    alerts = await read_topic(settings, ALERTS_TOPIC, match=lambda e: e.subject == hid)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.type == RAISED and alert.correlationid == cid
    assert alert.data["level"] == "at_risk" and alert.data["previous_level"] == "none"
    assert alert.data["factors"] == ["illness"] and alert.data["region_code"] == VILLAGE
    assert set(alert.data) == {
        "household_id",
        "region_code",
        "level",
        "previous_level",
        "score",
        "factors",
        "assessed_at",
        "policy_version",
    }
    changes = await read_topic(settings, ASSESSMENTS_TOPIC, match=lambda e: e.subject == hid)
    assert [c.data["level"] for c in changes] == ["at_risk"]  # the first "none, 0" is no change

    # The same event redelivered, and the same record in a new event: nothing moves.
    before = await history(runtime, hid)
    await send(producer, settings, "datasync.records", event)
    await send_records(producer, settings, medical_batch(hid, 40_000, f"m-{hid}"))
    marker = str(uuid.uuid4())
    await send_records(producer, settings, medical_batch(marker, 1, f"m-{marker}"))
    await send_snapshot(producer, settings, snapshot(marker))
    await wait_for(lambda: level_is(client, stack, marker, "none"), message="marker scored")
    assert await history(runtime, hid) == before
    assert (await risk_of(client, stack, hid))["score"] == risk["score"]
    alerts = await read_topic(settings, ALERTS_TOPIC, match=lambda e: e.subject == hid, timeout=2)
    assert len(alerts) == 1

    # Seed 二(一): 因病、因灾、因学支出达到监测预警线的名单下发各镇，及时入户核实. A new
    # medical cost while the household stays at_risk is new evidence: it alerts again.
    await send_records(producer, settings, medical_batch(hid, 1_000, f"m2-{hid}"))
    alerts = await wait_for(
        lambda: _alerts_if(settings, hid, 2), message="a renewed alert on the new record"
    )
    renewed = alerts[1]
    assert renewed.type == RENEWED and renewed.data["new_evidence"] == ["illness"]
    assert renewed.data["level"] == renewed.data["previous_level"] == "at_risk"


async def _alerts_if(settings: Settings, hid: str, count: int) -> list[CloudEvent] | None:
    alerts = await read_topic(settings, ALERTS_TOPIC, match=lambda e: e.subject == hid, timeout=1)
    return alerts if len(alerts) >= count else None


async def test_a_record_before_the_household_counts_once_the_household_is_known(
    stack: Stack,
    settings: Settings,
    service: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
) -> None:
    client, _ = service
    hid = str(uuid.uuid4())
    await send_records(producer, settings, medical_batch(hid, 30_000, f"early-{hid}"))
    await send_snapshot(producer, settings, snapshot(hid, total=40_000))
    risk = await wait_for(lambda: level_is(client, stack, hid, "at_risk"), message="at_risk")
    assert "30,000 元" in risk["factors"][0]["evidence"]

    # A newer snapshot with a higher income clears it; a stale one afterwards is ignored.
    await send_snapshot(producer, settings, snapshot(hid, version=3, total=90_000), created=False)
    await wait_for(lambda: level_is(client, stack, hid, "none"), message="cleared")
    await send_snapshot(producer, settings, snapshot(hid, version=2, total=10_000), created=False)
    marker = str(uuid.uuid4())
    await send_snapshot(producer, settings, snapshot(marker))
    await wait_for(lambda: level_is(client, stack, marker, "none"), message="marker")
    assert (await risk_of(client, stack, hid))["level"] == "none"
    alerts = await read_topic(settings, ALERTS_TOPIC, min_count=2, match=lambda e: e.subject == hid)
    assert [a.type for a in alerts] == [RAISED, CLEARED]
    assert alerts[1].data["previous_level"] == "at_risk"

    async with AsyncClientHeaders(client, stack) as c:
        r = await c.get(f"/v1/households/{hid}/assessments")
        assert r.status_code == 200
        levels = [i["level"] for i in r.json()["items"]]
        assert levels[:2] == ["none", "at_risk"]
        r = await c.get(f"/v1/households/{hid}/features")
        assert r.json()["medical"]["sources"] == [f"medical:early-{hid}"]
        assert "id_hash" not in r.text


class AsyncClientHeaders:
    """An httpx client wrapper that sends a risk:read token for every region."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack) -> None:
        self.client, self.headers = client, stack.headers("risk:read")

    async def __aenter__(self) -> AsyncClientHeaders:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, headers=self.headers, **kw)


async def test_api_scopes_regions_and_rejects_bad_input(
    stack: Stack,
    settings: Settings,
    service: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
) -> None:
    client, _ = service
    inside, outside = str(uuid.uuid4()), str(uuid.uuid4())
    await send_snapshot(producer, settings, snapshot(inside, total=10_000))
    await send_snapshot(
        producer, settings, snapshot(outside, total=10_000, region=OTHER_TOWN_VILLAGE)
    )
    await wait_for(lambda: level_is(client, stack, outside, "at_risk"), message="scored")
    await wait_for(lambda: level_is(client, stack, inside, "at_risk"), message="scored")

    town = stack.headers("risk:read", regions=["441881101"])
    r = await client.get(f"/v1/households/{outside}/risk", headers=town)
    assert r.status_code == 404  # as if it did not exist: no region oracle
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.get(f"/v1/households/{inside}/risk", headers=town)
    assert r.status_code == 200

    r = await client.get("/v1/assessments?level=at_risk&limit=500", headers=town)
    ids = {i["household_id"] for i in r.json()["items"]}
    assert inside in ids and outside not in ids
    r = await client.get("/v1/assessments?region=441881102", headers=town)
    assert r.status_code == 403

    # Paging walks every at_risk household exactly once, highest score first.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"level": "at_risk", "limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = (
            await client.get("/v1/assessments", params=params, headers=stack.headers("risk:read"))
        ).json()
        seen += [i["household_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and {inside, outside} <= set(seen)

    for url, loc in (
        ("/v1/households/not-a-uuid/risk", ["path", "household_id"]),
        ("/v1/assessments?region=44x", ["query", "region"]),
        ("/v1/assessments?level=bad", ["query", "level"]),
        ("/v1/assessments?cursor=%%%", ["query", "cursor"]),
    ):
        r = await client.get(url, headers=stack.headers("risk:read"))
        assert r.status_code == 422, url
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"] == loc
    assert (
        await client.get(f"/v1/households/{uuid.uuid4()}/risk", headers=town)
    ).status_code == 404
    assert (await client.get(f"/v1/households/{inside}/risk")).status_code == 401
    no_scope = stack.headers("registry:read")
    assert (await client.get(f"/v1/households/{inside}/risk", headers=no_scope)).status_code == 403


async def test_policy_versions_simulation_and_rescore(
    stack: Stack,
    settings: Settings,
    service: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
) -> None:
    client, _ = service
    hid = str(uuid.uuid4())
    await send_snapshot(producer, settings, snapshot(hid))
    await send_records(producer, settings, medical_batch(hid, 40_000, f"p-{hid}"))
    await wait_for(lambda: level_is(client, stack, hid, "at_risk"), message="at_risk")

    admin = stack.headers("risk:admin", "risk:read")
    current = (await client.get("/v1/policy", headers=admin)).json()
    proposed = {**current["policy"], "rigid_share": 0.95}

    r = await client.put("/v1/policy", json=proposed, headers=stack.headers("risk:read"))
    assert r.status_code == 403
    r = await client.put("/v1/policy", json={**proposed, "watch_score": 90}, headers=admin)
    assert r.status_code == 422 and "watch_score" in r.json()["detail"]
    r = await client.put("/v1/policy", json={**proposed, "rigid_share": "x"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "rigid_share"]
    r = await client.put("/v1/policy", json={**proposed, "typo": 1}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "typo"]

    sim = await client.post("/v1/policy/simulate?sample=2", json=proposed, headers=admin)
    assert sim.status_code == 200, sim.text
    body = sim.json()
    assert body["households"] == sum(body["by_level"].values())
    assert body["by_town"]["441881101"]
    assert body["changes"].get("at_risk→none", 0) >= 1
    assert len(body["samples"]["none"]) <= 2
    assert (await risk_of(client, stack, hid))["level"] == "at_risk"  # nothing written

    r = await client.put("/v1/policy", json={**proposed, "note": "试行 95%"}, headers=admin)
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert version == current["version"] + 1 and r.json()["author"] == "test"

    async def rescored() -> dict[str, Any] | None:
        r = await client.get("/v1/policy/rescore", headers=admin)
        job = r.json() if r.status_code == 200 else {}
        return job if job.get("status") == "done" and job["policy_version"] == version else None

    job = await wait_for(rescored, timeout=60, message="re-score done")
    assert job["processed"] == job["total"] and job["progress"] == 1.0
    risk = await risk_of(client, stack, hid)
    assert risk["level"] == "none" and risk["policy_version"] == version
    alerts = await read_topic(settings, ALERTS_TOPIC, min_count=2, match=lambda e: e.subject == hid)
    assert [a.type for a in alerts] == [RAISED, CLEARED]
    assert alerts[1].correlationid == f"policy-v{version}"
    old = (await client.get(f"/v1/policy?version={current['version']}", headers=admin)).json()
    assert old["policy"]["rigid_share"] == 0.5  # old versions never change


async def test_rescore_resumes_after_a_crash_and_never_alerts_twice(stack: Stack) -> None:
    """A private database, no consumer or job running: the handlers driven by hand."""
    settings = await stack.create_database("riskcrash", migrate=False)
    await asyncio.to_thread(upgrade, "risk", settings.db_url)
    engine = make_engine(settings.db_url, 2)
    sessions = make_session_factory(engine)
    try:
        households = [str(uuid.uuid4()) for _ in range(7)]
        events = [
            make_event("registry", HouseholdCreated(household=snapshot(h, total=14_000)), subject=h)
            for h in households
        ]
        async with unit_of_work(sessions) as session:
            await reactions.apply_events(session, events)
        async with unit_of_work(sessions) as session:  # a replay changes nothing
            await reactions.apply_events(session, events)
        assert await outbox_types(sessions) == {RAISED: 7, "backstop.risk.assessment.changed.v1": 7}

        lower = Policy(income_lines={2025: 6000.0})
        _, job_id = await policies.put_policy(sessions, policy=lower, author="t", note=None)
        async with unit_of_work(sessions) as session:
            assert await policies.rescore_step(session, chunk=3)  # pending → running, 3 done
        async with unit_of_work(sessions) as session:
            assert await policies.rescore_step(session, chunk=3)
        job = await job_row(sessions, job_id)
        assert (
            job.status == "running" and job.processed == 6 and job.cursor == sorted(households)[5]
        )
        # ...the process dies here; a new one picks the job up at its cursor.
        await policies.run_rescore(sessions, chunk=3)
        job = await job_row(sessions, job_id)
        assert job.status == "done" and job.processed == job.total == 7 and job.changed == 7
        types = await outbox_types(sessions)
        assert types[CLEARED] == 7 and types[RAISED] == 7  # each household cleared once
        async with sessions() as session:
            versions = set((await session.execute(select(m.current.c.policy_version))).scalars())
        assert versions == {2}
    finally:
        await engine.dispose()


async def test_a_batch_that_waited_for_a_household_decides_from_what_the_other_committed(
    stack: Stack,
) -> None:
    """Two transactions decide about one household at once (two partitions' batches, or a
    batch and the re-score): the second waits for the first's lock, then sees its
    assessment, so the crossing alerts once and the second counts both records."""
    settings = await stack.create_database("riskrace", migrate=False)
    await asyncio.to_thread(upgrade, "risk", settings.db_url)
    engine = make_engine(settings.db_url, 3)
    sessions = make_session_factory(engine)
    try:
        hid = str(uuid.uuid4())
        async with unit_of_work(sessions) as session:
            created = HouseholdCreated(household=snapshot(hid, total=45_000))
            await reactions.apply_events(session, [make_event("registry", created, subject=hid)])
        first = make_event("datasync", medical_batch(hid, 40_000, f"a-{hid}"), subject=hid)
        second = make_event("datasync", medical_batch(hid, 30_000, f"b-{hid}"), subject=hid)
        await second_waits_for_first(sessions, first, second)

        types = await outbox_types(sessions)
        assert types[RAISED] == 1
        async with sessions() as session:
            factors = await session.scalar(
                select(m.current.c.factors).where(m.current.c.household_id == hid)
            )
        illness = next(f for f in factors if f["code"] == "illness")
        assert "70,000 元（2 条记录）" in illness["evidence"]
    finally:
        await engine.dispose()


async def test_a_record_and_its_new_household_in_two_batches_at_once_both_count(
    stack: Stack,
) -> None:
    """The household's snapshot and a record for it applied by two batches at once (two
    partitions, or two workers): the record's batch waits for the household's, then
    scores it with the record. Neither sees the other's uncommitted rows, so without
    that wait the record would count only at the household's next event."""
    settings = await stack.create_database("risknew", migrate=False)
    await asyncio.to_thread(upgrade, "risk", settings.db_url)
    engine = make_engine(settings.db_url, 3)
    sessions = make_session_factory(engine)
    try:
        hid = str(uuid.uuid4())
        created = HouseholdCreated(household=snapshot(hid, total=45_000))
        record = make_event("datasync", medical_batch(hid, 40_000, f"a-{hid}"), subject=hid)
        await second_waits_for_first(sessions, make_event("registry", created, subject=hid), record)
        async with sessions() as session:
            level = await session.scalar(
                select(m.current.c.level).where(m.current.c.household_id == hid)
            )
        assert level == "at_risk"
    finally:
        await engine.dispose()


async def second_waits_for_first(sessions: Any, first: CloudEvent, second: CloudEvent) -> None:
    """Apply `first` and `second` in two batches at once, the first committing only once
    the second waits for a lock it holds (else: a timeout)."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def first_batch() -> None:
        async with unit_of_work(sessions) as session:
            await reactions.apply_events(session, [first])
            holding.set()
            await release.wait()

    async def second_batch() -> None:
        await holding.wait()
        async with unit_of_work(sessions) as session:
            await reactions.apply_events(session, [second])

    async def waiting_for_a_lock() -> bool | None:
        async with sessions() as session:
            n = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return True if n else None

    tasks = [asyncio.create_task(first_batch()), asyncio.create_task(second_batch())]
    try:
        await holding.wait()
        await wait_for(waiting_for_a_lock, timeout=10, message="the second batch waits")
    finally:
        release.set()
        await asyncio.gather(*tasks)


async def outbox_types(sessions: Any) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(
            select(outbox_table.c.event_type, func.count()).group_by(outbox_table.c.event_type)
        )
        return {t: n for t, n in rows.all()}


async def job_row(sessions: Any, job_id: int) -> Any:
    async with sessions() as session:
        return (
            await session.execute(select(m.rescore_jobs).where(m.rescore_jobs.c.id == job_id))
        ).one()


async def test_every_feed_maps_onto_features_and_rules(
    stack: Stack, service: tuple[httpx.AsyncClient, Runtime]
) -> None:
    """Education, disaster and civil-affairs records through the batch handler."""
    client, runtime = service
    hid = str(uuid.uuid4())
    s = snapshot(hid, total=200_000)
    child = MemberSnapshot(
        person_id=str(uuid.uuid4()),
        id_hash="c" * 64,
        relation="child",
        sex="female",
        birth_date=date.today().replace(year=date.today().year - 10, day=1),
        schooling="primary",
    )
    s = s.model_copy(update={"members": [*s.members, child]})
    today = date.today()
    period = today.strftime("%Y-%m")
    feeds = [
        RecordsMatched(
            household_id=hid,
            source="education",
            batch_id="jy-1",
            period=period,
            records=[
                EducationRecordData(
                    record_id=f"e-{hid}",
                    id_hash="c" * 64,
                    stage="primary",
                    term=period,
                    fees=0,
                    aid_received=0,
                    out_of_pocket=0,
                    enrolled=False,
                )
            ],
        ),
        RecordsMatched(
            household_id=hid,
            source="disaster",
            batch_id="yj-1",
            period=period,
            records=[
                DisasterRecordData(
                    record_id=f"d-{hid}",
                    id_hash="a" * 64,
                    occurred_on=today - timedelta(days=3),
                    disaster_type="flood",
                    loss_amount=5_000,
                    housing_damaged=True,
                )
            ],
        ),
        RecordsMatched(
            household_id=hid,
            source="civil_affairs",
            batch_id="mz-1",
            period=period,
            records=[
                CivilAffairsRecordData(
                    record_id=f"c-{hid}",
                    id_hash="a" * 64,
                    kind="temporary_assistance",
                    status="granted",
                    amount=2_000,
                    start_on=today - timedelta(days=10),
                )
            ],
        ),
    ]
    events = [make_event("registry", HouseholdCreated(household=s), subject=hid)]
    events += [make_event("datasync", f, subject=hid) for f in feeds]
    async with unit_of_work(runtime.sessions) as session:
        await reactions.apply_events(session, events)
    risk = await risk_of(client, stack, hid)
    assert risk["level"] == "at_risk"
    codes = {f["code"]: f for f in risk["factors"]}
    assert set(codes) == {"housing", "other", "compulsory_education"}
    assert codes["compulsory_education"]["sources"] == [f"education:e-{hid}"]
    assert "临时救助 1 次" in codes["other"]["evidence"]
    features = (
        await client.get(f"/v1/households/{hid}/features", headers=stack.headers("risk:read"))
    ).json()
    assert features["disaster"]["amount_12m"] == 5_000
    assert features["members"][2]["enrolled"] is False


async def test_a_platform_warning_is_evidence_in_the_assessment_with_its_source(
    stack: Stack,
    settings: Settings,
    service: tuple[httpx.AsyncClient, Runtime],
    producer: AIOKafkaProducer,
) -> None:
    """省平台预警 (issue 19): assistance's warning.matched feeds the household's assessment."""
    from backstop.contracts.assistance import TASKS_TOPIC, PlatformWarningMatched

    client, _ = service
    hid = str(uuid.uuid4())
    await send_snapshot(producer, settings, snapshot(hid))
    await wait_for(lambda: level_is(client, stack, hid, "none"), message="first score")
    warning = PlatformWarningMatched(
        warning_id=f"GD-{hid[:8]}",
        household_id=hid,
        region_code=VILLAGE,
        system="return_warning",
        system_label="返贫预警监测系统",
        item="housing",
        item_label="住房安全",
        factor="housing",
        level="prominent_issue",
        warned_on=date.today() - timedelta(days=3),
        task_id=str(uuid.uuid4()),
    )
    await send(producer, settings, TASKS_TOPIC, make_event("assistance", warning, subject=hid))
    risk = await wait_for(lambda: level_is(client, stack, hid, "at_risk"), message="at_risk")
    [housing] = [f for f in risk["factors"] if f["code"] == "housing"]
    assert housing["evidence"] == "住房安全保障存在突出问题（省平台监测预警）"
    assert housing["sources"] == [f"province:GD-{hid[:8]}"]
