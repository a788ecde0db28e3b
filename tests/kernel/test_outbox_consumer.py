"""The outbox, relay, consumer, inbox and DLQ against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.app import Runtime, ServiceSpec
from backstop.bus import TOPICS, ConsumerSpec, dlq_topic, ensure_topics
from backstop.contracts.kernel import PROBE_TOPIC, ProbeEmitted
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from tests.support import PrivateKafka, Stack, wait_for

pytestmark = pytest.mark.integration


def probe_spec(group: str) -> ServiceSpec:
    async def record(session: AsyncSession, event: CloudEvent) -> None:
        data = event.payload()
        assert isinstance(data, ProbeEmitted)
        if data.fail:
            raise RuntimeError(f"poison probe {data.seq}")
        await session.execute(
            text(
                "INSERT INTO probe_effects (event_id, household_id, seq, consumer)"
                " VALUES (:e, :h, :s, :c)"
            ),
            {"e": event.id, "h": data.household_id, "s": data.seq, "c": group},
        )

    return ServiceSpec(
        name="kernel",
        title="probe",
        description="probe",
        routers=[],
        consumers=[
            ConsumerSpec(
                group=group,
                topics=[PROBE_TOPIC],
                handlers={"backstop.kernel.probe.emitted.v1": record},
            )
        ],
    )


async def emit(runtime: Runtime, household_id: str, seqs: range, fail: bool = False) -> list[str]:
    ids = []
    async with unit_of_work(runtime.sessions) as session:
        for seq in seqs:
            event = make_event(
                "kernel",
                ProbeEmitted(household_id=household_id, seq=seq, fail=fail),
                subject=household_id,
            )
            ids.append(event.id)
            await outbox.publish(session, event)
    return ids


async def effects(
    runtime: Runtime, group: str, households: list[str]
) -> list[tuple[str, str, int]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            text(
                "SELECT event_id, household_id, seq FROM probe_effects WHERE consumer = :c"
                " AND household_id = ANY(:h) ORDER BY id"
            ),
            {"c": group, "h": households},
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def test_outbox_event_applied_exactly_once_even_when_delivered_twice(
    kernel_settings: Settings,
) -> None:
    group = f"probe-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(probe_spec(group), kernel_settings)
    await runtime.start()
    try:
        household = str(uuid.uuid4())
        ids = await emit(runtime, household, range(20))
        await wait_for(lambda: _count(runtime, group, [household], 20), message="20 effects")
        # Deliver the same Kafka messages a second time, as a redelivery would.
        probe_topic = kernel_settings.topic(PROBE_TOPIC)
        reader = AIOKafkaConsumer(
            probe_topic,
            bootstrap_servers=kernel_settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await reader.start()
        copies = []
        while len(copies) < 20:
            for records in (await reader.getmany(timeout_ms=500)).values():
                copies += [r for r in records if CloudEvent.from_bytes(r.value).id in ids]
        await reader.stop()
        producer = AIOKafkaProducer(bootstrap_servers=kernel_settings.kafka_bootstrap_servers)
        await producer.start()
        for record in copies:
            await producer.send_and_wait(probe_topic, value=record.value, key=record.key)
        await producer.stop()
        marker = await emit(runtime, household, range(20, 21))
        await wait_for(lambda: _count(runtime, group, [household], 21), message="marker effect")
        rows = await effects(runtime, group, [household])
        assert [r[0] for r in rows] == ids + marker  # once each, in order
    finally:
        await runtime.stop()


async def _count(runtime: Runtime, group: str, households: list[str], n: int) -> bool:
    return len(await effects(runtime, group, households)) >= n


async def test_poison_message_lands_in_dlq_and_the_stream_goes_on(
    kernel_settings: Settings,
) -> None:
    group = f"probe-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(probe_spec(group), kernel_settings)
    await runtime.start()
    try:
        household = str(uuid.uuid4())
        await emit(runtime, household, range(0, 3))
        poison = await emit(runtime, household, range(3, 4), fail=True)
        await emit(runtime, household, range(4, 7))
        # A message that is not even a CloudEvent.
        producer = AIOKafkaProducer(bootstrap_servers=kernel_settings.kafka_bootstrap_servers)
        await producer.start()
        await producer.send_and_wait(
            kernel_settings.topic(PROBE_TOPIC), value=b"{not json", key=household.encode()
        )
        await producer.stop()
        await emit(runtime, household, range(7, 8))
        await wait_for(lambda: _count(runtime, group, [household], 7), message="7 good effects")
        assert [r[2] for r in await effects(runtime, group, [household])] == [0, 1, 2, 4, 5, 6, 7]

        dlq = AIOKafkaConsumer(
            dlq_topic(kernel_settings.topic(PROBE_TOPIC)),
            bootstrap_servers=kernel_settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await dlq.start()
        dead: list = []
        try:
            for _ in range(50):
                for records in (await dlq.getmany(timeout_ms=300)).values():
                    dead += [r for r in records if r.key == household.encode()]
                if len(dead) >= 2:
                    break
        finally:
            await dlq.stop()
        assert len(dead) == 2
        garbage = next(r for r in dead if r.value == b"{not json")
        failed = next(r for r in dead if r is not garbage)
        assert CloudEvent.from_bytes(failed.value).id == poison[0]
        assert b"poison probe 3" in dict(failed.headers)["error"]
        assert dict(failed.headers)["consumer_group"] == kernel_settings.topic(group).encode()
        assert b"JSONDecodeError" in dict(garbage.headers)["error"]
    finally:
        await runtime.stop()


async def test_broker_down_writes_succeed_and_every_event_arrives_in_order(
    stack: Stack,
    kernel_settings: Settings,
) -> None:
    kafka = PrivateKafka(port=19092)
    await asyncio.to_thread(kafka.up)
    settings = kernel_settings.model_copy(update={"kafka_bootstrap_servers": kafka.bootstrap})
    await ensure_topics(settings)
    group = f"probe-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(probe_spec(group), settings)
    await runtime.start()
    households = [str(uuid.uuid4()) for _ in range(5)]
    try:
        for h in households:
            await emit(runtime, h, range(0, 5))
        await wait_for(lambda: _count(runtime, group, households, 25), message="first 25 effects")

        await asyncio.to_thread(kafka.down)
        for h in households:
            await emit(runtime, h, range(5, 45))  # writes succeed while Kafka is down
        async with runtime.sessions() as session:
            assert await outbox.backlog(session) == 200

        await asyncio.to_thread(kafka.up)
        await wait_for(
            lambda: _count(runtime, group, households, 225), timeout=90, message="all effects"
        )
        rows = await effects(runtime, group, households)
        assert len(rows) == 225 == len({r[0] for r in rows})
        for h in households:
            assert [r[2] for r in rows if r[1] == h] == list(range(45))
    finally:
        await runtime.stop()
        await asyncio.to_thread(kafka.down)


async def test_a_held_partition_holds_up_no_other_with_partitions_at_once(
    kernel_settings: Settings,
) -> None:
    """With `partitions_at_once`, a partition's next batch is fetched as soon as its last
    one committed, not when every batch of a poll is done: while one partition's batch is
    held (here until the others applied what was sent after it), the others go on; and
    each household's events still apply once each, in order."""
    group = f"probe-{uuid.uuid4().hex[:6]}"
    partition_of = DefaultPartitioner()
    partitions = list(range(TOPICS[PROBE_TOPIC]))
    slow = str(uuid.uuid4())
    slow_partition = partition_of(slow.encode(), partitions, partitions)
    others = [h for h in (str(uuid.uuid4()) for _ in range(40))
              if partition_of(h.encode(), partitions, partitions) != slow_partition][:12]  # fmt: skip
    held, release = asyncio.Event(), asyncio.Event()

    async def record_batch(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
        rows = []
        for event in events:
            data = event.payload()
            assert isinstance(data, ProbeEmitted)
            if data.household_id == slow and not release.is_set():
                held.set()
                await release.wait()
            rows.append({"e": event.id, "h": data.household_id, "s": data.seq, "c": group})
        await session.execute(
            text(
                "INSERT INTO probe_effects (event_id, household_id, seq, consumer)"
                " VALUES (:e, :h, :s, :c)"
            ),
            rows,
        )

    consumer = ConsumerSpec(
        group=group,
        topics=[PROBE_TOPIC],
        batch_handler=record_batch,
        batch_types=frozenset({"backstop.kernel.probe.emitted.v1"}),
        partitions_at_once=3,
    )
    runtime = Runtime(replace(probe_spec(group), consumers=[consumer]), kernel_settings)
    await runtime.start()
    try:
        slow_ids = await emit(runtime, slow, range(5))
        await asyncio.wait_for(held.wait(), 30)
        sent = {h: await emit(runtime, h, range(3)) for h in others}
        # Sent after the held batch was fetched: applied only if fetching went on.
        await wait_for(lambda: _count(runtime, group, others, 3 * len(others)),
                       timeout=30, message="the other partitions' events")  # fmt: skip
        release.set()
        await wait_for(lambda: _count(runtime, group, [slow], 5), message="the held events")
        rows = await effects(runtime, group, [slow, *others])
        for household, ids in [(slow, slow_ids), *sent.items()]:
            assert [r[0] for r in rows if r[1] == household] == ids  # once each, in order
    finally:
        release.set()
        await runtime.stop()
