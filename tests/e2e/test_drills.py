"""Fault drills: real processes stopped and started under load. Every drill checks that
nothing accepted is lost and nothing is applied twice."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from backstop.bus import dlq_topic, ensure_topics
from backstop.settings import SERVICES
from tests.e2e import flows
from tests.e2e.conftest import FAST, start_system, stop_system
from tests.e2e.system import System
from tests.support import PrivateKafka, PrivatePostgres, Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def kafka_drill_system() -> AsyncIterator[tuple[System, PrivateKafka]]:
    """A whole system on a private broker, so stopping it disturbs nobody else."""
    kafka = PrivateKafka(port=19392)
    await asyncio.to_thread(kafka.up)
    stack = Stack()
    await ensure_topics(stack.settings("tests", KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap))
    system = System(
        stack=stack, label="_kd", env={**FAST, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap}
    )
    await system.setup()
    await system.start_all()
    try:
        yield system, kafka
    finally:
        await stop_system(system)
        await asyncio.to_thread(kafka.down)


async def test_kafka_stopped_while_10k_records_are_posted(
    kafka_drill_system: tuple[System, PrivateKafka],
) -> None:
    system, kafka = kafka_drill_system
    households = await flows.register(system, 200)
    await flows.wait_known_to_risk(system, households)

    await asyncio.to_thread(kafka.down)
    records = flows.medical_records(households, per_household=50)  # 10k records, 500 yuan each
    summaries = await flows.post_medical(system, records)  # every batch accepted, Kafka down
    assert sum(s["accepted"] for s in summaries) == len(records) == 10_000
    assert sum(s["matched"] for s in summaries) == 10_000

    await asyncio.to_thread(kafka.up)
    await flows.wait_scored(system, households, records_each=50)
    # 25,000 yuan out of pocket against 30,000 of income: every household is at_risk, and
    # each raised its alert exactly once.
    assert set((await flows.levels(system, households)).values()) == {"at_risk"}
    alerts = await flows.alerts_by_household(system, households, expected=len(households))
    assert len(alerts) == len(households) and set(alerts.values()) == {1}
    tasks = await flows.open_tasks(system)
    assert all(tasks[h["id"]] == 1 for h in households)


@pytest.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    system = await start_system("_dr")
    try:
        yield system
    finally:
        await stop_system(system)


async def test_risk_killed_mid_stream_of_50k_records(system: System) -> None:
    households = await flows.register(system, 500)
    await flows.wait_known_to_risk(system, households)
    records = flows.medical_records(households, per_household=100, amount=300)  # 50k
    first, rest = records[:15_000], records[15_000:]
    await flows.post_medical(system, first, batch_size=5000)
    await asyncio.sleep(2)  # risk is in the middle of the stream
    system.kill("risk", signal.SIGKILL)
    await flows.post_medical(system, rest, batch_size=5000)
    system.start("risk")
    await system.wait_ready("risk")
    await flows.wait_scored(system, households, records_each=100, timeout=600)
    tasks = await flows.open_tasks(system)
    assert max(tasks[h["id"]] for h in households) == 1
    alerts = await flows.alerts_by_household(system, households, expected=len(households))
    assert set(alerts.values()) == {1}


async def test_same_batch_twice_concurrently_counts_once(system: System) -> None:
    households = await flows.register(system, 3)
    await flows.wait_known_to_risk(system, households)
    batch = {"batch_id": f"dup-{uuid.uuid4().hex[:8]}", "period": "2026-11",
             "records": flows.medical_records(households, per_household=2)}  # fmt: skip
    async with system.client("datasync", "feeds:medical", "feeds:read") as datasync:
        first, second = await asyncio.gather(
            datasync.post("/v1/feeds/medical/batches", json=batch),
            datasync.post("/v1/feeds/medical/batches", json=batch),
        )
        assert {first.status_code, second.status_code} <= {200, 201}, (first.text, second.text)
        assert first.json() == second.json()
        assert first.json()["accepted"] == 6
    await flows.wait_scored(system, households, records_each=2)


async def test_poison_message_on_every_topic_goes_to_its_dlq(system: System) -> None:
    settings = system.stack.settings("tests")
    consumed = ["registry.households", "datasync.records", "datasync.deliveries", "risk.alerts",
                "assistance.tasks", "assistance.decisions", "assistance.findings"]  # fmt: skip
    marker = f"poison-{uuid.uuid4().hex}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for topic in consumed:
            await producer.send_and_wait(settings.topic(topic), value=b"{" + marker, key=marker)
    finally:
        await producer.stop()

    # The stream goes on: a household registered and billed after the poison is scored.
    households = await flows.register(system, 2)
    await flows.wait_known_to_risk(system, households)
    await flows.post_medical(system, flows.medical_records(households, per_household=1))
    await flows.wait_scored(system, households, records_each=1)

    for topic in consumed:
        reader = AIOKafkaConsumer(dlq_topic(settings.topic(topic)), group_id=None,
                                  bootstrap_servers=settings.kafka_bootstrap_servers,
                                  auto_offset_reset="earliest")  # fmt: skip
        await reader.start()
        found = []
        try:
            for _ in range(30):
                for batch in (await reader.getmany(timeout_ms=300)).values():
                    found += [r for r in batch if r.key == marker]
                if found:
                    break
        finally:
            await reader.stop()
        assert found, f"no poison in {topic}.dlq"
        assert b"JSONDecodeError" in dict(found[0].headers)["error"]


@pytest.fixture(scope="module")
async def pg_drill_system() -> AsyncIterator[tuple[System, PrivatePostgres]]:
    """A whole system on a private PostgreSQL cluster, so restarting it disturbs nobody."""
    postgres = PrivatePostgres(port=15499)
    await asyncio.to_thread(postgres.up)
    stack = Stack(pg_port=postgres.port)
    await stack.create_topics()
    system = System(stack=stack, label="_pg", env=dict(FAST))
    await system.setup()
    await system.start_all()
    try:
        yield system, postgres
    finally:
        await stop_system(system)
        await asyncio.to_thread(postgres.drop)


async def test_postgres_restarted_under_load(
    pg_drill_system: tuple[System, PrivatePostgres],
) -> None:
    system, postgres = pg_drill_system
    households = await flows.register(system, 50)
    await flows.wait_known_to_risk(system, households)
    records = flows.medical_records(households, per_household=40, amount=100)  # 2,000 records
    accepted: list[int] = []

    async def department_sends() -> None:
        """A department's system: 20 batches, each retried until the service accepts it."""
        async with system.client("datasync", "feeds:medical") as datasync:
            for i in range(0, len(records), 100):
                batch = {
                    "batch_id": f"pg-{i}",
                    "period": "2026-11",
                    "records": records[i : i + 100],
                }
                while True:
                    try:
                        r = await datasync.post("/v1/feeds/medical/batches", json=batch)
                    except httpx.HTTPError:
                        r = None
                    if r is not None and r.status_code == 201:
                        accepted.append(r.json()["accepted"])
                        break
                    assert r is None or r.status_code >= 500, r.text  # never a 4xx
                    await asyncio.sleep(0.5)

    sender = asyncio.create_task(department_sends())
    await asyncio.sleep(1)
    await asyncio.to_thread(postgres.stop)
    async with httpx.AsyncClient(timeout=10) as http:
        for service in SERVICES:
            r = await http.get(f"{system.url(service)}/readyz")
            assert r.status_code == 503 and r.json()["checks"]["database"] != "ok"
        await asyncio.sleep(2)
        await asyncio.to_thread(postgres.start)
        for service in SERVICES:
            await system.wait_ready(service)  # recovered by themselves
    await sender
    assert sum(accepted) == len(records)
    await flows.wait_scored(system, households, records_each=40)
