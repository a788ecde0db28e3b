"""Events of datasync.

`datasync.records` (key = household id): `backstop.datasync.records.matched.v1`, one
event per household per batch, carrying all of that household's records the batch
matched (each with `id_hash`, never the ID number or the name). Why not one event per
record: risk re-scores a household from all its features, so per-record events would
re-score a household once per hospital stay in a 200k-row monthly file; per household
per batch it re-scores once, with fewer, larger events through the outbox, Kafka and
the consumer's inbox. A record matched later (the registry adds the person after the
batch arrived) leaves in its own event for that household and the original batch.

Corrections (更正) and voids (作废) of a record already received: each record carries its
`revision` (1 as first received, +1 per correction or void). A correction leaves in
`records.matched` with the record's new content and revision, in the period of the
record it corrects; a void in `backstop.datasync.records.voided.v1`. A consumer keeps
per (source, record_id) only the highest revision it has seen, so a redelivered or
reordered event never rolls a record back and a corrected record is never counted twice.

`datasync.deliveries` (key = source): `backstop.datasync.batch.received.v1` when a
batch was applied, and `backstop.datasync.delivery.late.v1` once per source and period
whose due date passed with no batch (so notify can remind the department).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from backstop.events import event_type

TOPIC = "datasync.records"
DELIVERIES_TOPIC = "datasync.deliveries"
Source = Literal["medical", "disaster", "civil_affairs", "education"]


class RecordRevision(BaseModel):
    # Additive (v1 stays compatible): 1 as first received, +1 per correction or void.
    revision: int = Field(default=1, ge=1)


class MedicalRecordData(RecordRevision):
    source: Literal["medical"] = "medical"
    record_id: str
    id_hash: str
    settled_on: date
    total_cost: float
    insurance_paid: float
    assistance_paid: float
    out_of_pocket: float


class DisasterRecordData(RecordRevision):
    source: Literal["disaster"] = "disaster"
    record_id: str
    id_hash: str
    occurred_on: date
    disaster_type: str
    loss_amount: float
    housing_damaged: bool


class CivilAffairsRecordData(RecordRevision):
    source: Literal["civil_affairs"] = "civil_affairs"
    record_id: str
    id_hash: str
    kind: Literal["dibao", "tekun", "temporary_assistance", "disability_subsidy"]
    status: Literal["granted", "terminated"]
    amount: float
    start_on: date | None = None
    end_on: date | None = None


class EducationRecordData(RecordRevision):
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


class VoidedRecord(BaseModel):
    source: Source
    record_id: str
    id_hash: str
    revision: int = Field(ge=2)


@event_type("backstop.datasync.records.voided.v1", topic=TOPIC)
class RecordsVoided(BaseModel):
    """Records of one household the department voided (作废): they no longer count."""

    household_id: str
    source: Source
    batch_id: str  # the batch that voided them
    period: str  # the period of the records voided
    records: list[VoidedRecord]


def keep_newest(rows: dict[tuple[str, str], dict[str, Any]], row: dict[str, Any]) -> None:
    """The consumers' rule for the records of one batch of events: keep `row` (with its
    `source`, `record_id` and `revision`) unless `rows` holds a version of that record as
    new; of equal revisions the first stays, as a table's insert keeps the first."""
    key = (row["source"], row["record_id"])
    held = rows.get(key)
    if held is None or held["revision"] < row["revision"]:
        rows[key] = row


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
    corrected: int = 0  # of `accepted`: corrections (更正) of records received before
    voided: int = 0  # of `accepted`: voids (作废)


@event_type("backstop.datasync.delivery.late.v1", topic=DELIVERIES_TOPIC)
class DeliveryLate(BaseModel):
    source: Source
    period: str
    due_on: date
    department: str  # e.g. 医保局


class UnmatchedPerson(BaseModel):
    id_hash: str
    records: list[FeedRecordData] = Field(default_factory=list)  # new, or corrected (更正)
    voided: list[VoidedRecord] = Field(default_factory=list)  # 作废


@event_type("backstop.datasync.records.unmatched.v1", topic=TOPIC)
class RecordsUnmatched(BaseModel):
    """Accepted records of people not (yet) in the register, by person (`id_hash`): a
    batch's new records, or later its corrections and voids of such records. Many people
    an event (up to `UNMATCHED_PER_EVENT`, and well under the broker's message limit), so
    a monthly file of mostly unregistered people is a few hundred events, not one per
    person; key and subject = `<source>:<batch_id>:<chunk>` (there is no household). No ID
    number, no name: who a person is stays in datasync (`GET /v1/unmatched?id_hash=`,
    registry:pii). risk keeps them to find 因病、因灾、因学 costs over the warning line
    (seed 二(一)). When the registry later adds the person, the records leave again as
    `records.matched` for the household."""

    source: Source
    batch_id: str
    period: str
    people: list[UnmatchedPerson]


UNMATCHED_PER_EVENT = 1000  # people
