"""Datasync test fixtures: one migrated database per run, ID numbers, registry events."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from aiokafka import AIOKafkaProducer

from backstop.contracts.registry import (
    TOPIC as REGISTRY_TOPIC,
)
from backstop.contracts.registry import (
    HouseholdCreated,
    HouseholdEvent,
    HouseholdSnapshot,
    MemberMoved,
    MemberRemoved,
    MemberSnapshot,
)
from backstop.events import CloudEvent, make_event
from backstop.idnumber import check_digit, id_hash
from backstop.settings import Settings
from tests.support import Stack

_sequence = itertools.count(1)


def make_id_number(born: date = date(1980, 5, 17), area: str = "441881") -> str:
    """A fresh, valid resident ID number (GB 11643 check digit)."""
    seq = next(_sequence) % 1000
    first17 = f"{area}{born:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
async def datasync_settings(stack: Stack) -> AsyncIterator[Settings]:
    yield await stack.create_database("datasync")


def household_event(
    settings: Settings,
    household_id: str,
    id_numbers: list[str],
    *,
    version: int = 1,
    time: datetime | None = None,
    kind: str = "created",
) -> CloudEvent:
    """What registry would publish: the full snapshot, members carrying only id_hash."""
    snapshot = HouseholdSnapshot(
        household_id=household_id,
        region_code="441881101001",
        town_code="441881101",
        type="alleviated",
        members=[
            MemberSnapshot(
                person_id=str(uuid.uuid4()),
                id_hash=id_hash(n, settings.pii_key),
                relation="head" if i == 0 else "child",
                sex="male",
                birth_date=date(1980, 5, 17),
            )
            for i, n in enumerate(id_numbers)
        ],
        version=version,
    )
    payload: HouseholdEvent
    if kind == "removed":
        payload = MemberRemoved(household=snapshot, person_id="p", id_hash="h", reason="moved")
    elif kind == "moved":
        payload = MemberMoved(household=snapshot, person_id="p", from_household_id="x")
    else:
        payload = HouseholdCreated(household=snapshot)
    return make_event(
        "registry",
        payload,
        subject=household_id,
        time=time or datetime.now(UTC),
    )


async def produce(settings: Settings, events: list[CloudEvent]) -> None:
    """Play the registry: put events on `registry.households`, keyed by household."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                settings.topic(REGISTRY_TOPIC),
                value=event.to_bytes(),
                key=(event.subject or "").encode(),
            )
    finally:
        await producer.stop()
