"""assistance.decisions and assistance.findings applied to households, idempotently."""

from __future__ import annotations

from datetime import date

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from backstop.contracts.assistance import (
    FindingObserved,
    IncomeFinding,
    MonitoringStarted,
    RiskEliminated,
)
from backstop.contracts.registry import TOPIC
from backstop.events import CloudEvent, make_event
from tests.registry.conftest import VILLAGE, Registry, household_body
from tests.support import read_topic, wait_for

pytestmark = pytest.mark.integration


async def send(
    registry: Registry, payload: BaseModel, household_id: str, *, times: int = 1
) -> CloudEvent:
    """Put an assistance event on its topic (`times` > 1: redelivered, same event id)."""
    event = make_event("assistance", payload, subject=household_id)
    producer = AIOKafkaProducer(bootstrap_servers=registry.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        topic = (
            "assistance.findings"
            if isinstance(payload, FindingObserved)
            else "assistance.decisions"
        )
        for _ in range(times):
            await producer.send_and_wait(
                registry.settings.topic(topic), event.to_bytes(), key=household_id.encode()
            )
    finally:
        await producer.stop()
    return event


async def household(registry: Registry, household_id: str) -> dict[str, object]:
    response = await registry.client.get(f"/v1/households/{household_id}", headers=registry.reader)
    return dict(response.json())


async def test_monitoring_started_then_risk_eliminated(registry: Registry) -> None:
    created = await registry.client.post(
        "/v1/households", json=household_body(), headers=registry.writer
    )
    household_id = created.json()["id"]
    started = MonitoringStarted(
        household_id=household_id, region_code=VILLAGE, case_id="case-1",
        monitoring_type="unstable", risk_factors=["illness"], decided_on=date(2026, 11, 1),
        approved_by="county-office",
    )  # fmt: skip
    await send(registry, started, household_id, times=2)
    # A second decision event (new id) for the same case changes nothing either.
    await send(registry, started, household_id)

    async def monitored() -> dict[str, object] | None:
        h = await household(registry, household_id)
        return h if h["monitoring_status"] == "monitored" else None

    h = await wait_for(monitored, message="monitoring applied")
    assert h["type"] == "unstable"
    assert h["monitoring"]["since"] == "2026-11-01"  # type: ignore[index]
    assert h["contact_missing"] is True  # a monitored household needs a leader as contact

    eliminated = RiskEliminated(
        household_id=household_id, region_code=VILLAGE, case_id="case-1", method="natural",
        reason="income above the line for two quarters", decided_on=date(2026, 11, 20),
        approved_by="county-office",
    )  # fmt: skip
    await send(registry, eliminated, household_id)

    async def done() -> dict[str, object] | None:
        h = await household(registry, household_id)
        return h if h["monitoring_status"] == "eliminated" else None

    h = await wait_for(done, message="elimination applied")
    assert h["monitoring"]["elimination_method"] == "natural"  # type: ignore[index]
    assert h["monitoring"]["ended_on"] == "2026-11-20"  # type: ignore[index]
    assert h["version"] == 3  # created, monitored, eliminated: duplicates changed nothing

    events = await read_topic(
        registry.settings, TOPIC, min_count=2,
        match=lambda e: e.subject == household_id and e.type.endswith("monitoring.changed.v1"),
    )  # fmt: skip
    assert [(e.data["previous_status"], e.data["household"]["monitoring_status"]) for e in events] == [
        ("none", "monitored"), ("monitored", "eliminated")
    ]  # fmt: skip
    assert events[1].data["elimination_method"] == "natural"
    history = (
        await registry.client.get(f"/v1/households/{household_id}/history", headers=registry.reader)
    ).json()
    assert [i["actor"] for i in history["items"]][1:] == ["county-office", "county-office"]


async def test_finding_child_out_of_school(registry: Registry) -> None:
    created = await registry.client.post(
        "/v1/households", json=household_body(), headers=registry.writer
    )
    household_id = created.json()["id"]
    child = next(
        m for m in (await household(registry, household_id))["members"] if m["relation"] == "child"
    )  # type: ignore[attr-defined]
    finding = FindingObserved(
        household_id=household_id, region_code=VILLAGE, observed_by="village-cadre-7",
        observed_on=date(2026, 11, 25), origin="visit",
        guarantees={"drinking_water": "possible_issue"},
        income=IncomeFinding(year=2026, total=9000),
        schooling={child["person_id"]: "out_of_school"},
    )  # fmt: skip
    await send(registry, finding, household_id, times=2)

    async def applied() -> dict[str, object] | None:
        h = await household(registry, household_id)
        return h if h["version"] == 2 else None

    h = await wait_for(applied, message="finding applied")
    guarantees = h["guarantees"]
    assert guarantees["compulsory_education"] == {
        "status": "prominent_issue",
        "verified_on": "2026-11-25",
    }  # type: ignore[index]
    assert guarantees["drinking_water"]["status"] == "possible_issue"  # type: ignore[index]
    assert h["annual_income"]["year"] == 2026 and h["annual_income"]["total"] == 9000  # type: ignore[index]
    events = await read_topic(
        registry.settings, TOPIC,
        match=lambda e: e.subject == household_id and e.type.endswith("household.updated.v1"),
    )  # fmt: skip
    snapshot = events[0].data["household"]
    assert snapshot["guarantees"]["compulsory_education"] == "prominent_issue"
    assert [
        m["schooling"] for m in snapshot["members"] if m["person_id"] == child["person_id"]
    ] == ["out_of_school"]
    assert snapshot["incomes"][0] == {
        "year": 2026, "total": 9000.0, "per_capita": 3000.0,
        "wage": None, "business": None, "transfer": None, "property": None,
    }  # fmt: skip
    assert sorted(events[0].data["changed_fields"]) == [
        "guarantees",
        "incomes",
        "members.schooling",
    ]


async def test_decision_for_unknown_household_is_ignored(registry: Registry) -> None:
    unknown = "00000000-0000-4000-8000-000000000001"
    event = await send(
        registry,
        RiskEliminated(household_id=unknown, region_code=VILLAGE, case_id="x", method="assisted",
                       reason="-", decided_on=date(2026, 1, 1), approved_by="x"),
        unknown,
    )  # fmt: skip
    # A later event on the same partition key proves the consumer moved past it.
    created = await registry.client.post(
        "/v1/households", json=household_body(), headers=registry.writer
    )
    household_id = created.json()["id"]
    await send(
        registry,
        MonitoringStarted(household_id=household_id, region_code=VILLAGE, case_id="c",
                          monitoring_type="marginal", risk_factors=[], decided_on=date(2026, 1, 1),
                          approved_by="x"),
        household_id,
    )  # fmt: skip

    async def monitored() -> bool:
        return (await household(registry, household_id))["monitoring_status"] == "monitored"

    await wait_for(monitored, message="later decision applied")
    dlq = await read_topic(
        registry.settings, "assistance.decisions.dlq", timeout=1, match=lambda e: e.id == event.id
    )
    assert dlq == []
