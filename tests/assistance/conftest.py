"""The assistance service in-process on this run's database and topics; risk and registry
are played by producing their events to the broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from backstop.app import Runtime
from backstop.contracts.registry import (
    ContactSnapshot,
    HouseholdCreated,
    HouseholdSnapshot,
    IncomeSnapshot,
    MemberSnapshot,
)
from backstop.contracts.risk import AlertRaised
from backstop.events import CloudEvent, make_event, spec_of
from backstop.settings import Settings
from services.assistance.app import create
from tests.support import Stack, serve, wait_for

TOWN = "441881101"
VILLAGE = TOWN + "001"


@dataclass
class Assistance:
    client: httpx.AsyncClient
    runtime: Runtime
    settings: Settings
    stack: Stack
    producer: AIOKafkaProducer

    def headers(self, *scopes: str, regions: tuple[str, ...] = ("*",)) -> dict[str, str]:
        return self.stack.headers(*scopes, regions=regions)

    @property
    def rw(self) -> dict[str, str]:
        return self.headers("assistance:read", "assistance:write", "funds:write")

    async def send(self, event: CloudEvent) -> None:
        topic = self.settings.topic(spec_of(event.type).topic)
        await self.producer.send_and_wait(
            topic, value=event.to_bytes(), key=(event.subject or event.id).encode()
        )

    async def household(self, **changes: object) -> HouseholdSnapshot:
        """Play registry: publish a household snapshot and wait until assistance has it."""
        snapshot = make_household(**changes)
        await self.send(
            make_event(
                "registry", HouseholdCreated(household=snapshot), subject=snapshot.household_id
            )
        )

        async def known() -> bool:
            from services.assistance.models import Household

            async with self.runtime.sessions() as session:
                row = await session.get(Household, snapshot.household_id)
                return row is not None and row.version >= snapshot.version

        await wait_for(known, message="household in the read model")
        return snapshot


def make_household(**changes: object) -> HouseholdSnapshot:
    base: dict[str, object] = {
        "household_id": str(uuid.uuid4()),
        "region_code": VILLAGE,
        "town_code": TOWN,
        "type": "alleviated",
        "members": [
            MemberSnapshot(
                person_id=str(uuid.uuid4()),
                id_hash="0" * 64,
                relation="head",
                sex="male",
                birth_date=date(1970, 1, 1),
                labor_capacity="full",
            )
        ],
        "incomes": [IncomeSnapshot(year=2025, total=30000, per_capita=10000)],
        "contacts": [ContactSnapshot(role="cadre", name="李干部", phone="13800000000")],
    }
    base.update(changes)
    return HouseholdSnapshot.model_validate(base)


def alert(household_id: str, factors: list[str], region_code: str = VILLAGE) -> CloudEvent:
    return make_event(
        "risk",
        AlertRaised(
            household_id=household_id,
            region_code=region_code,
            level="at_risk",
            previous_level="none",
            score=70,
            factors=factors,
            assessed_at=datetime.now(UTC),
            policy_version=1,
        ),
        subject=household_id,
        correlation_id=str(uuid.uuid4()),
    )


async def backdate_case(database_url: str, case_id: str, *, days: int) -> None:
    """The case as opened (its verification confirmed) `days` ago, so a test can run a
    procedure whose steps are dated in the past: no step may precede the opening."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(
            "UPDATE cases SET opened_at = opened_at - make_interval(days => $2) WHERE id = $1",
            case_id,
            days,
        )
    finally:
        await conn.close()


def data_of(event: CloudEvent) -> BaseModel:
    return event.payload()


@pytest.fixture(scope="session")
async def a(stack: Stack) -> AsyncIterator[Assistance]:
    settings = await stack.create_database("assistance")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        async with serve(create, settings) as (client, runtime):
            yield Assistance(client, runtime, settings, stack, producer)
    finally:
        await producer.stop()
