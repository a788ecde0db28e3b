"""Corrections (更正) and voids (作废) in quality's read model, through its batch handler on
the real PostgreSQL: the rules see a corrected record once, at its newest revision, and a
voided one not at all, whatever order the versions arrive in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from backstop.app import Runtime
from backstop.contracts.datasync import (
    MedicalRecordData,
    RecordsMatched,
    RecordsVoided,
    VoidedRecord,
)
from backstop.contracts.registry import HouseholdCreated
from backstop.contracts.risk import AssessmentChanged
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from services.quality import reactions
from services.quality.app import create
from tests.quality.test_service import VILLAGE_A, couple, findings, household
from tests.support import Stack, serve

pytestmark = pytest.mark.integration

SETTLED = date.today() - timedelta(days=20)


@pytest.fixture(scope="module")
async def service(stack: Stack) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    settings: Settings = await stack.create_database("quality", label="corrections")
    async with serve(create, settings, background=False) as served:
        yield served


def medical(hid: str, head: str, amount: float, revision: int) -> CloudEvent:
    record = MedicalRecordData(
        record_id=f"m-{hid}",
        id_hash=head,
        settled_on=SETTLED,
        total_cost=amount,
        insurance_paid=0,
        assistance_paid=0,
        out_of_pocket=amount,
        revision=revision,
    )
    batch = RecordsMatched(
        household_id=hid,
        source="medical",
        batch_id=f"yb-{revision}",
        period=SETTLED.strftime("%Y-%m"),
        records=[record],
    )
    return make_event("datasync", batch, subject=hid)


async def apply(runtime: Runtime, *events: CloudEvent) -> None:
    async with unit_of_work(runtime.sessions) as session:
        await reactions.apply_events(session, list(events))


async def test_the_rules_see_the_newest_version_once_and_a_void_not_at_all(
    service: tuple[httpx.AsyncClient, Runtime], stack: Stack
) -> None:
    client, runtime = service
    h = household(couple())  # 24,000 a year: the medical warning line is 12,000
    hid, head = h.household_id, h.members[0].id_hash
    assessed = AssessmentChanged(
        household_id=hid,
        region_code=VILLAGE_A,
        level="none",
        previous_level=None,
        score=0,
        previous_score=None,
        factors=[],
        per_capita_income=12000.0,
        income_line=7800.0,
        policy_version=1,
        assessed_at=datetime.now(UTC),
    )
    await apply(
        runtime,
        make_event("registry", HouseholdCreated(household=h), subject=hid),
        make_event("risk", assessed, subject=hid),
    )
    original, correction = medical(hid, head, 20_000, 1), medical(hid, head, 15_000, 2)
    await apply(runtime, original)
    message = (await findings(client, stack, hid))["DE002"]["message"]
    assert "20000" in message
    await apply(runtime, correction)
    await apply(runtime, original)  # redelivered late: no roll-back
    message = (await findings(client, stack, hid))["DE002"]["message"]
    assert "15000" in message and "35000" not in message  # the corrected amount, once
    void = RecordsVoided(
        household_id=hid,
        source="medical",
        batch_id="yb-void",
        period=SETTLED.strftime("%Y-%m"),
        records=[VoidedRecord(source="medical", record_id=f"m-{hid}", id_hash=head, revision=3)],
    )
    await apply(runtime, make_event("datasync", void, subject=hid))
    assert "DE002" not in await findings(client, stack, hid)
    await apply(runtime, correction)  # the tombstone holds
    assert "DE002" not in await findings(client, stack, hid)
