"""Real risk events into quality: the risk service scores households from registry
snapshots and emits `backstop.risk.assessment.changed.v1`; quality's consumer keeps them.
Under a burst of level changes (none → at_risk → none → at_risk, many households in one
batch) nothing is dead-lettered or parked, and quality ends with risk's levels. Guards the
"inconsistent types deduced for parameter $2" once seen when one parameter of quality's
risk upsert was read as two types."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select

from backstop import outbox
from backstop.app import Runtime
from backstop.bus import dlq_topic, make_producer
from backstop.contracts.registry import (
    HouseholdCreated,
    HouseholdSnapshot,
    HouseholdUpdated,
    IncomeSnapshot,
    MemberSnapshot,
)
from backstop.contracts.risk import ASSESSMENTS_TOPIC
from backstop.events import make_event
from backstop.settings import Settings
from services.quality import models as quality_models
from services.quality.app import create as create_quality
from services.risk import models as risk_models
from services.risk.app import create as create_risk
from tests.support import Stack, serve, wait_for

pytestmark = pytest.mark.integration

HOUSEHOLDS = 120
YEAR = datetime.now(UTC).year - 1


@pytest.fixture(scope="module")
async def services(stack: Stack) -> AsyncIterator[tuple[Settings, Runtime, Runtime]]:
    risk_settings = await stack.create_database("risk")
    quality_settings = await stack.create_database("quality")
    async with (
        serve(create_risk, risk_settings) as (_, risk),
        serve(create_quality, quality_settings) as (_, quality),
    ):
        yield quality_settings, risk, quality


def snapshot(household_id: str, version: int, total: float) -> HouseholdSnapshot:
    return HouseholdSnapshot(
        household_id=household_id,
        region_code="441881105001",
        town_code="441881105",
        type="alleviated",
        members=[
            MemberSnapshot(person_id=f"{household_id}-{n}", id_hash=f"risk-{household_id}-{n}",
                           relation=relation, sex=sex, birth_date=date(1970 + n, 1, 1),  # type: ignore[arg-type]
                           schooling="none")
            for n, (relation, sex) in enumerate((("head", "male"), ("spouse", "female")))
        ],
        incomes=[IncomeSnapshot(year=YEAR, total=total, per_capita=total / 2)],
        guarantees={"food": "ok", "housing": "ok"},
        version=version,
    )  # fmt: skip


async def dead_letters(settings: Settings, group: str) -> list[str]:
    """The errors of what consumer `group` dead-lettered from risk.assessments in this run."""
    topic = dlq_topic(settings.topic(ASSESSMENTS_TOPIC))
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = list(consumer.assignment())
        assert partitions, f"{topic} should exist"
        end = await consumer.end_offsets(partitions)
        errors: list[str] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    if headers.get("consumer_group") == settings.topic(group):  # as bus names it
                        errors.append(headers.get("error", ""))
        return errors
    finally:
        await consumer.stop()


async def test_risk_assessments_are_kept_and_never_dead_lettered(
    services: tuple[Settings, Runtime, Runtime],
) -> None:
    settings, risk, quality = services
    ids = [str(uuid.uuid4()) for _ in range(HOUSEHOLDS)]
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    try:
        # Per-capita income below the line, then well above it, then below again: each
        # household's level moves both ways, its assessments queued in a burst.
        for version, total in ((1, 4000.0), (2, 90000.0), (3, 4000.0)):
            for hid in ids:
                payload = (HouseholdCreated if version == 1 else HouseholdUpdated)(
                    household=snapshot(hid, version, total)
                )
                event = make_event("registry", payload, subject=hid)
                await producer.send(
                    settings.topic("registry.households"), event.to_bytes(), key=hid.encode()
                )
        await producer.flush()
    finally:
        await producer.stop()

    async def levels(runtime: Runtime, table: Any) -> dict[str, str]:
        async with runtime.sessions() as session:
            rows = await session.execute(
                select(table.c.household_id, table.c.level).where(table.c.household_id.in_(ids))
            )
            return {r.household_id: r.level for r in rows}

    async def settled() -> bool:
        if await dead_letters(settings, "quality"):
            return True  # no use waiting: the assertion below shows the error
        scored = await levels(risk, risk_models.current)
        return len(scored) == HOUSEHOLDS and await levels(quality, quality_models.risk) == scored

    await wait_for(settled, timeout=90, interval=1.0, message="quality holds risk's levels")
    assert await dead_letters(settings, "quality") == []
    kept = await levels(quality, quality_models.risk)
    assert kept == await levels(risk, risk_models.current)
    assert set(kept.values()) - {"none"}, "the burst should have moved some levels"
    async with quality.sessions() as session:
        assert await outbox.parked_count(session) == 0
