"""Events of datasync.

`datasync.records` (key = household id): `backstop.datasync.records.matched.v1`, one
event per household per batch, carrying all of that household's records the batch
matched (each with `id_hash`, never the ID number or the name). Why not one event per
record: risk re-scores a household from all its features, so per-record events would
re-score a household once per hospital stay in a 200k-row monthly file; per household
per batch it re-scores once, with fewer, larger events through the outbox, Kafka and
the consumer's inbox. A record matched later (the registry adds the person after the
batch arrived) leaves in its own event for that household and the original batch.

`datasync.deliveries` (key = source): `backstop.datasync.batch.received.v1` when a
batch was applied, and `backstop.datasync.delivery.late.v1` once per source and period
whose due date passed with no batch (so notify can remind the department).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from backstop.events import event_type

TOPIC = "datasync.records"
DELIVERIES_TOPIC = "datasync.deliveries"
Source = Literal["medical", "disaster", "civil_affairs", "education"]


class MedicalRecordData(BaseModel):
    source: Literal["medical"] = "medical"
    record_id: str
    id_hash: str
    settled_on: date
    total_cost: float
    insurance_paid: float
    assistance_paid: float
    out_of_pocket: float


class DisasterRecordData(BaseModel):
    source: Literal["disaster"] = "disaster"
    record_id: str
    id_hash: str
    occurred_on: date
    disaster_type: str
    loss_amount: float
    housing_damaged: bool


class CivilAffairsRecordData(BaseModel):
    source: Literal["civil_affairs"] = "civil_affairs"
    record_id: str
    id_hash: str
    kind: Literal["dibao", "tekun", "temporary_assistance", "disability_subsidy"]
    status: Literal["granted", "terminated"]
    amount: float
    start_on: date | None = None
    end_on: date | None = None


class EducationRecordData(BaseModel):
    source: Literal["education"] = "education"
    record_id: str
    id_hash: str
    stage: str
    term: str
    fees: float
    aid_received: float
    out_of_pocket: float
    enrolled: bool


FeedRecordData = Annotated[
    MedicalRecordData | DisasterRecordData | CivilAffairsRecordData | EducationRecordData,
    Field(discriminator="source"),
]


@event_type("backstop.datasync.records.matched.v1", topic=TOPIC)
class RecordsMatched(BaseModel):
    household_id: str
    source: Source
    batch_id: str
    period: str  # "2026-11"
    records: list[FeedRecordData]


@event_type("backstop.datasync.batch.received.v1", topic=DELIVERIES_TOPIC)
class BatchReceived(BaseModel):
    source: Source
    batch_id: str
    period: str
    received: int
    accepted: int
    rejected: int
    matched: int
    unmatched: int
    on_time: bool
    # Additive (v1 stays compatible): who delivered, against which due date.
    duplicates: int = 0
    department: str | None = None  # e.g. 医保局
    due_on: date | None = None  # None for an unscheduled period (education outside 3/10)


@event_type("backstop.datasync.delivery.late.v1", topic=DELIVERIES_TOPIC)
class DeliveryLate(BaseModel):
    source: Source
    period: str
    due_on: date
    department: str  # e.g. 医保局
