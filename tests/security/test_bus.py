"""§1 of the hardening issue: nothing can stop the event bus. An event Kafka will never
take is refused where it is written or parked by the relay, the events written after it
go on, and an operator re-sends or drops it; an outage still parks and loses nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import insert

from backstop import outbox
from backstop.app import Runtime, create_app
from backstop.bus import ensure_topics
from backstop.contracts.kernel import PROBE_TOPIC, ProbeEmitted
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from backstop.tables import outbox as outbox_table
from tests.kernel.test_outbox_consumer import effects, emit, probe_spec
from tests.support import PrivateKafka, Stack, serve, wait_for

pytestmark = pytest.mark.integration

SMALL_TOPIC_LIMIT = 4096  # the topic's max.message.bytes in the broker-refusal test


def _probe(household_id: str, seq: int) -> CloudEvent:
    return make_event("kernel", ProbeEmitted(household_id=household_id, seq=seq),
                      subject=household_id)  # fmt: skip


def oversize_event(household_id: str, seq: int, size: int) -> CloudEvent:
    """A probe event carrying `size` bytes of padding (its consumer ignores the extra)."""
    event = make_event("kernel", ProbeEmitted(household_id=household_id, seq=seq),
                       subject=household_id)  # fmt: skip
    event.data["padding"] = "x" * size
    return event


async def write_raw(runtime: Runtime, event: CloudEvent) -> None:
    """An outbox row written without the publish-time size check, as one written before
    the limit was lowered would be."""
    async with unit_of_work(runtime.sessions) as session:
        await session.execute(insert(outbox_table), [outbox.outbox_row(event, None)])
    outbox.wake()


async def parked_rows(runtime: Runtime) -> list[Any]:
    async with runtime.sessions() as session:
        return await outbox.parked(session)


def parked_metric(service: str) -> float:
    return REGISTRY.get_sample_value("backstop_outbox_parked_rows_total",
                                     {"service": service, "topic": PROBE_TOPIC}) or 0.0  # fmt: skip


async def seqs_applied(runtime: Runtime, group: str, household: str) -> list[int]:
    return [r[2] for r in await effects(runtime, group, [household])]


@pytest.fixture
async def small_topic_settings(stack: Stack, kernel_settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose probe topic takes at most SMALL_TOPIC_LIMIT bytes a message, while
    the services think the broker takes 1 MiB: Kafka itself refuses the large event."""
    prefix = f"{stack.prefix}small{uuid.uuid4().hex[:4]}."
    settings = kernel_settings.model_copy(update={"topic_prefix": prefix})
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(
            settings.topic(PROBE_TOPIC), 3, 1,
            topic_configs={"max.message.bytes": str(SMALL_TOPIC_LIMIT)},
        )])  # fmt: skip
    finally:
        await admin.close()
    await ensure_topics(settings, {PROBE_TOPIC: 3})
    yield settings


async def test_an_event_kafka_refuses_is_parked_and_later_events_go_on(
    small_topic_settings: Settings,
) -> None:
    settings = small_topic_settings
    group = f"probe-{uuid.uuid4().hex[:6]}"
    spec = probe_spec(group)
    before = parked_metric("kernel")

    def create(s: Settings, *, background: bool = True) -> FastAPI:
        return create_app(spec, s, background=background)

    async with serve(create, settings) as (client, runtime):
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        big = oversize_event(first, 5, 3 * SMALL_TOPIC_LIMIT)
        # One transaction, so one relay batch: the refused event has batch-mates before
        # and after it in its partition, and another household's events beside it.
        async with unit_of_work(runtime.sessions) as session:  # under the 1 MiB we know of
            for seq in range(11):
                event = big if seq == 5 else _probe(first, seq)
                await outbox.publish(session, event)
                await outbox.publish(session, _probe(second, seq))

        # Everything written after the refused event arrives, each household in order.
        await wait_for(lambda: _applied(runtime, group, first, 10), timeout=60,
                       message="the events after the refused one")  # fmt: skip
        await wait_for(lambda: _applied(runtime, group, second, 11), timeout=60,
                       message="the other household's events")  # fmt: skip
        assert await seqs_applied(runtime, group, first) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
        assert await seqs_applied(runtime, group, second) == list(range(11))

        (row,) = await parked_rows(runtime)
        assert row.event_id == big.id and "MessageSizeTooLarge" in row.error
        assert parked_metric("kernel") == before + 1
        async with runtime.sessions() as session:
            assert await outbox.backlog(session) == 0

        # The way back: list it under the admin scope, raise the topic's limit, re-send.
        assert (await client.get("/v1/admin/outbox/parked",
                                 headers=_headers(settings, "risk:admin"))).status_code == 403  # fmt: skip
        admin_headers = _headers(settings, "kernel:admin")
        listed = (await client.get("/v1/admin/outbox/parked", headers=admin_headers)).json()
        assert [i["event_id"] for i in listed["items"]] == [big.id]
        assert "padding" not in str(listed) and listed["items"][0]["size"] > SMALL_TOPIC_LIMIT
        await _raise_topic_limit(settings)
        r = await client.post(f"/v1/admin/outbox/parked/{row.id}/resend", headers=admin_headers)
        assert r.status_code == 202, r.text
        await wait_for(lambda: _applied(runtime, group, first, 11), timeout=60,
                       message="the re-sent event")  # fmt: skip
        assert 5 in await seqs_applied(runtime, group, first)
        assert await parked_rows(runtime) == []
        r = await client.delete(f"/v1/admin/outbox/parked/{row.id}", headers=admin_headers)
        assert r.status_code == 404


async def test_an_event_over_the_configured_limit_is_refused_with_413_or_parked(
    stack: Stack, kernel_settings: Settings
) -> None:
    settings = kernel_settings.model_copy(update={"kafka_max_message_bytes": 8192})
    group = f"probe-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(probe_spec(group), settings)
    await runtime.start()
    try:
        household = str(uuid.uuid4())
        # Written by a request: refused in its unit of work, nothing of it is kept.
        with pytest.raises(outbox.EventTooLarge) as refused:
            async with unit_of_work(runtime.sessions) as session:
                await outbox.publish(session, oversize_event(household, 0, 100))
                await outbox.publish(session, oversize_event(household, 1, 9000))
        assert refused.value.status == 413 and "8192" in refused.value.detail
        async with runtime.sessions() as session:
            assert await outbox.backlog(session) == 0

        # Already in the outbox (written before the limit was lowered): parked unsent.
        big = oversize_event(household, 1, 9000)
        await emit(runtime, household, range(0, 1))
        await write_raw(runtime, big)
        await emit(runtime, household, range(2, 4))
        await wait_for(lambda: _applied(runtime, group, household, 3), message="3 effects")
        assert await seqs_applied(runtime, group, household) == [0, 2, 3]
        rows = [r for r in await parked_rows(runtime) if r.event_id == big.id]
        assert rows and "MessageSizeTooLarge" in rows[0].error

        async with unit_of_work(runtime.sessions) as session:
            assert await outbox.drop_parked(session, [rows[0].id]) == 1
        assert not [r for r in await parked_rows(runtime) if r.event_id == big.id]
    finally:
        await runtime.stop()


async def test_broker_outage_parks_nothing_loses_nothing_and_keeps_each_households_order(
    stack: Stack, kernel_settings: Settings
) -> None:
    kafka = PrivateKafka(port=19492)
    await asyncio.to_thread(kafka.up)
    settings = kernel_settings.model_copy(
        update={"kafka_bootstrap_servers": kafka.bootstrap, "kafka_max_message_bytes": 8192}
    )
    await ensure_topics(settings, {PROBE_TOPIC: 6})
    group = f"probe-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(probe_spec(group), settings)
    await runtime.start()
    households = [str(uuid.uuid4()) for _ in range(4)]
    try:
        for h in households:
            await emit(runtime, h, range(0, 3))
        await wait_for(lambda: _total(runtime, group, households, 12), message="first effects")
        async with runtime.sessions() as session:
            parked_before = len(await outbox.parked(session))

        await asyncio.to_thread(kafka.down)
        big = oversize_event(households[0], 3, 9000)
        for h in households:
            await emit(runtime, h, range(3, 20) if h != households[0] else range(4, 20))
        await write_raw(runtime, big)  # refused for good, among rows that only wait
        await asyncio.sleep(3)  # the relay fails against the stopped broker meanwhile
        async with runtime.sessions() as session:
            assert len(await outbox.parked(session)) == parked_before  # an outage parks nothing
            assert await outbox.backlog(session) == 4 * 17  # the refused row waits too

        await asyncio.to_thread(kafka.up)
        await wait_for(lambda: _total(runtime, group, households, 4 * 20 - 1), timeout=120,
                       message="every event after the outage")  # fmt: skip
        rows = await effects(runtime, group, households)
        assert len(rows) == len({r[0] for r in rows}) == 79  # once each
        for h in households:
            expected = [s for s in range(20) if not (h == households[0] and s == 3)]
            assert [r[2] for r in rows if r[1] == h] == expected
        async with runtime.sessions() as session:
            ids = [r.event_id for r in await outbox.parked(session)]
        assert big.id in ids
    finally:
        await runtime.stop()
        await asyncio.to_thread(kafka.down)


async def _applied(runtime: Runtime, group: str, household: str, n: int) -> bool:
    return len(await effects(runtime, group, [household])) >= n


async def _total(runtime: Runtime, group: str, households: list[str], n: int) -> bool:
    return len(await effects(runtime, group, households)) >= n


def _headers(settings: Settings, *scopes: str) -> dict[str, str]:
    from backstop.auth import issue_token

    return {"Authorization": f"Bearer {issue_token(settings, sub='op', scopes=scopes)}"}


async def _raise_topic_limit(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, settings.topic(PROBE_TOPIC),
            configs={"max.message.bytes": str(1024 * 1024)},
        )])  # fmt: skip
    finally:
        await admin.close()
