"""People not in the register (纳入建档立卡核查) in the risk service, against the real
PostgreSQL and Kafka: datasync's `records.unmatched` played on the broker, the
`unregistered.flagged` events read back. Flagged once at the line, again only on new
evidence; a correction replaces its record and a void removes it from the sums."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from aiokafka import AIOKafkaProducer

from backstop.contracts.datasync import (
    MedicalRecordData,
    RecordsUnmatched,
    UnmatchedPerson,
    VoidedRecord,
)
from backstop.contracts.risk import ASSESSMENTS_TOPIC, UnregisteredFlagged
from backstop.events import CloudEvent, make_event
from backstop.settings import Settings
from tests.risk import test_service as base
from tests.support import read_topic

# The service tests' module fixtures: this module's own database, service and producer.
settings, service, producer = base.settings, base.service, base.producer

FLAGGED = "backstop.risk.unregistered.flagged.v1"
SETTLED = date.today() - timedelta(days=20)


def bill(record_id: str, amount: float, person: str, revision: int = 1) -> MedicalRecordData:
    return MedicalRecordData(
        record_id=record_id, id_hash=person, settled_on=SETTLED, total_cost=amount * 2,
        insurance_paid=amount, assistance_paid=0, out_of_pocket=amount, revision=revision,
    )  # fmt: skip


async def unmatched(
    producer: AIOKafkaProducer,
    settings: Settings,
    person: str,
    records: list[MedicalRecordData],
    voided: list[VoidedRecord] | None = None,
) -> CloudEvent:
    batch_id = f"yb-{uuid.uuid4().hex[:8]}"
    payload = RecordsUnmatched(
        source="medical", batch_id=batch_id, period=SETTLED.strftime("%Y-%m"),
        people=[UnmatchedPerson(id_hash=person, records=records, voided=voided or [])],
    )  # fmt: skip
    # A person's events on one partition, as datasync's chunks of one batch are not: the
    # order of the steps below is the test's.
    event = make_event("datasync", payload, subject=person)
    return await base.send(producer, settings, "datasync.records", event)


async def flags(settings: Settings, person: str, count: int) -> list[UnregisteredFlagged]:
    events = await read_topic(
        settings,
        ASSESSMENTS_TOPIC,
        min_count=count + 1,  # and nothing more than `count`
        timeout=6 if count else 3,
        match=lambda e: e.type == FLAGGED and e.subject == person,
    )
    payloads = [p for e in events if isinstance(p := e.payload(), UnregisteredFlagged)]
    assert len(payloads) == len(events)
    return payloads


async def test_flagged_at_the_line_once_then_on_new_evidence_corrections_and_voids(
    settings: Settings,
    service: object,
    producer: AIOKafkaProducer,
) -> None:
    person = uuid.uuid4().hex * 2
    # 6,000 yuan: under the 10,000 line of a person with no income on record.
    await unmatched(producer, settings, person, [bill("u1", 6000, person)])
    # A redelivered record counts once; 6,000 + 5,000 reaches the line.
    await unmatched(producer, settings, person, [bill("u1", 6000, person)])
    await unmatched(producer, settings, person, [bill("u2", 5000, person)])
    (first,) = await flags(settings, person, 1)
    assert first.new_evidence == ["illness"]
    assert "11,000" in first.factors[0].evidence
    assert sorted(first.factors[0].sources) == ["medical:u1", "medical:u2"]

    # u2 corrected down to 3,000 (9,000 in all: under the line), then a new 500 bill
    # (9,500): nothing. A correction counted twice would have flagged both times.
    await unmatched(producer, settings, person, [bill("u2", 3000, person, revision=2)])
    await unmatched(producer, settings, person, [bill("u2", 5000, person)])  # older: ignored
    await unmatched(producer, settings, person, [bill("u3", 500, person)])
    assert len(await flags(settings, person, 1)) == 1

    # A new 1,000 bill: 10,500, a record not flagged before → flagged again.
    await unmatched(producer, settings, person, [bill("u4", 1000, person)])
    second = (await flags(settings, person, 2))[1]
    assert "10,500" in second.factors[0].evidence

    # u1 voided (4,500 left), a 200 bill: under the line, nothing more.
    gone = VoidedRecord(source="medical", record_id="u1", id_hash=person, revision=2)
    await unmatched(producer, settings, person, [], voided=[gone])
    await unmatched(producer, settings, person, [bill("u1", 6000, person)])  # older: ignored
    await unmatched(producer, settings, person, [bill("u5", 200, person)])
    assert len(await flags(settings, person, 2)) == 2


async def test_many_people_in_one_event_each_flagged_once(
    settings: Settings, service: object, producer: AIOKafkaProducer
) -> None:
    """Two batches of 40 people, as datasync sends them (many people an event): each
    reaches the line with the second bill and is flagged exactly once."""
    people = [uuid.uuid4().hex * 2 for _ in range(40)]
    period = SETTLED.strftime("%Y-%m")
    for second in (False, True):
        payload = RecordsUnmatched(
            source="medical",
            batch_id=f"yb-{uuid.uuid4().hex[:8]}",
            period=period,
            people=[
                UnmatchedPerson(
                    id_hash=p,
                    records=[bill(f"a-{p[:8]}", 6000, p)]
                    + ([bill(f"b-{p[:8]}", 5000, p)] if second else []),
                )
                for p in people
            ],
        )
        event = make_event("datasync", payload, subject=f"medical:{payload.batch_id}:0")
        await base.send(producer, settings, "datasync.records", event)
    events = await read_topic(
        settings,
        ASSESSMENTS_TOPIC,
        min_count=len(people) + 1,
        timeout=20,
        match=lambda e: e.type == FLAGGED and e.subject in people,
    )
    assert sorted(e.subject or "" for e in events) == sorted(people)
    for event in events:
        flag = event.payload()
        assert isinstance(flag, UnregisteredFlagged)
        assert "11,000" in flag.factors[0].evidence
