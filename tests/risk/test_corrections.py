"""Corrections (更正) and voids (作废) of department records in risk, through the consumer's
batch handler on the real PostgreSQL: a newer revision replaces a record, a void removes
it, and no replayed or reordered older version brings back what it replaced."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from backstop.app import Runtime
from backstop.contracts.datasync import RecordsMatched, RecordsVoided, VoidedRecord
from backstop.contracts.registry import HouseholdCreated
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from services.risk import reactions
from services.risk.app import create
from tests.risk.test_service import medical_batch, snapshot
from tests.support import Stack, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def service(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings: Settings = await stack.create_database("risk", label="corrections")
    async with serve(create, settings, background=False) as served:
        yield served


def revised(hid: str, record_id: str, amount: float, revision: int) -> CloudEvent:
    batch = medical_batch(hid, amount, record_id)
    [record] = batch.records
    record.revision = revision
    return make_event("datasync", batch, subject=hid)


def voided(hid: str, record_id: str, revision: int) -> CloudEvent:
    original: RecordsMatched = medical_batch(hid, 0, record_id)
    payload = RecordsVoided(
        household_id=hid,
        source="medical",
        batch_id=f"void-{record_id}",
        period=original.period,
        records=[
            VoidedRecord(source="medical", record_id=record_id, id_hash="a" * 64, revision=revision)
        ],
    )
    return make_event("datasync", payload, subject=hid)


async def apply(runtime: Runtime, *events: CloudEvent) -> None:
    async with unit_of_work(runtime.sessions) as session:
        await reactions.apply_events(session, list(events))


async def state(
    service: tuple[httpx.AsyncClient, Runtime], stack: Stack, hid: str
) -> tuple[str, float, int]:
    """The household's level and its 12-month medical sum and record count."""
    client, _ = service
    headers = stack.headers("risk:read")
    risk = (await client.get(f"/v1/households/{hid}/risk", headers=headers)).json()
    medical: dict[str, Any] = (
        await client.get(f"/v1/households/{hid}/features", headers=headers)
    ).json()["medical"]
    return risk["level"], medical["amount_12m"], medical["records"]


async def test_a_correction_replaces_and_a_void_removes_whatever_the_order(
    service: tuple[httpx.AsyncClient, Runtime], stack: Stack
) -> None:
    _, runtime = service
    hid = str(uuid.uuid4())
    await apply(
        runtime, make_event("registry", HouseholdCreated(household=snapshot(hid)), subject=hid)
    )
    rid = f"m-{hid}"
    original, correction = revised(hid, rid, 30_000, 1), revised(hid, rid, 2_000, 2)
    await apply(runtime, original)
    assert await state(service, stack, hid) == ("at_risk", 30_000, 1)
    await apply(runtime, correction)
    assert await state(service, stack, hid) == ("none", 2_000, 1)  # never 32,000
    await apply(runtime, original)  # redelivered late: no roll-back
    assert await state(service, stack, hid) == ("none", 2_000, 1)
    await apply(runtime, voided(hid, rid, 3))
    assert await state(service, stack, hid) == ("none", 0, 0)
    await apply(runtime, correction, original)  # the tombstone holds
    assert await state(service, stack, hid) == ("none", 0, 0)
    async with runtime.sessions() as session:
        row = (
            await session.execute(
                text("SELECT revision, voided FROM risk_records WHERE record_id = :r"), {"r": rid}
            )
        ).one()
    assert tuple(row) == (3, True)


async def test_versions_met_in_one_batch_or_out_of_order_count_the_newest_once(
    service: tuple[httpx.AsyncClient, Runtime], stack: Stack
) -> None:
    _, runtime = service
    hid = str(uuid.uuid4())
    created = make_event("registry", HouseholdCreated(household=snapshot(hid)), subject=hid)
    one, other = f"m1-{hid}", f"m2-{hid}"
    # One batch: a record and its correction; the void of another before its original.
    await apply(
        runtime,
        created,
        revised(hid, one, 30_000, 1),
        revised(hid, one, 25_000, 2),
        voided(hid, other, 2),
        revised(hid, other, 40_000, 1),
    )
    assert await state(service, stack, hid) == ("at_risk", 25_000, 1)
    # A later correction that arrives before the one it follows.
    await apply(runtime, revised(hid, one, 1_000, 3))
    await apply(runtime, revised(hid, one, 25_000, 2))
    assert await state(service, stack, hid) == ("none", 1_000, 1)
