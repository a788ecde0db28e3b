"""Tables of the datasync database and their Create/Public schemas."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from backstop.requests import PeriodText, RequestModel
from services.datasync.config import MAX_JSON_RECORDS


class DatasyncBase(SQLModel, registry=registry()):
    """Base of every datasync table: its own metadata, so its migrations see only these."""


def _now_column() -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


class FeedBatch(DatasyncBase, table=True):
    """One batch a department pushed. `summary` is the response it got, returned again
    verbatim when the same batch is resent."""

    __tablename__ = "feed_batches"
    __table_args__ = (Index("ix_feed_batches_source_period", "source", "period"),)

    source: str = Field(primary_key=True, max_length=20)
    batch_id: str = Field(primary_key=True, max_length=100)
    period: str = Field(max_length=7)
    status: str = Field(default="processing", max_length=20)  # processing → done
    content_hash: str | None = Field(default=None, max_length=64)
    format: str = Field(max_length=10)  # json, csv, xlsx
    filename: str | None = Field(default=None, max_length=255)
    submitted_by: str = Field(max_length=200)
    received_at: datetime | None = _now_column()
    completed_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    due_on: date | None = None
    on_time: bool | None = None
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    matched: int = 0
    unmatched: int = 0
    profile_version: int | None = None  # the mapping profile a file was read with
    summary: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))


class FeedRecord(DatasyncBase, table=True):
    """An accepted department record, with the department's raw row (ID number included)
    for audit. `data` is its event form (id_hash, never the ID number). The primary key
    is the de-duplication key: a record id is applied once per source.

    A correction (更正) replaces `data`, `content_hash` and `name` and raises `revision`;
    a void (作废) sets `voided_at`. `batch_id`, `period`, `idx` and `raw` stay those of
    the record as first received; every version is in `feed_record_versions`."""

    __tablename__ = "feed_records"
    __table_args__ = (
        Index("ix_feed_records_batch", "source", "batch_id", "idx"),
        Index(
            "ix_feed_records_unmatched_hash",
            "id_hash",
            postgresql_where="household_id IS NULL",
        ),
        Index(
            "ix_feed_records_unmatched",
            "source",
            "period",
            "record_id",
            postgresql_where="household_id IS NULL",
        ),
    )

    source: str = Field(primary_key=True, max_length=20)
    record_id: str = Field(primary_key=True, max_length=64)
    batch_id: str = Field(max_length=100)
    period: str = Field(max_length=7)
    idx: int
    id_number: str = Field(max_length=18)
    id_hash: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=100)
    # `json`, not `jsonb`: kept exactly as written (the raw row as the department sent
    # it, for audit) and cheaper to insert on the 200k-row path; nothing indexes into it.
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    raw: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    household_id: str | None = Field(default=None, max_length=36)
    matched_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    received_at: datetime | None = _now_column()
    revision: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default=text("1"))
    )
    voided_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class FeedRecordVersion(DatasyncBase, table=True):
    """The history of a corrected or voided record, one row per version: the original
    (copied in when first changed), each correction and the void, each with the batch
    and raw row it came in. A record never changed has only its `feed_records` row."""

    __tablename__ = "feed_record_versions"
    __table_args__ = (Index("ix_feed_record_versions_batch", "source", "batch_id", "idx"),)

    source: str = Field(primary_key=True, max_length=20)
    record_id: str = Field(primary_key=True, max_length=64)
    revision: int = Field(primary_key=True)
    action: str = Field(max_length=12)  # original, correction, void
    batch_id: str = Field(max_length=100)
    period: str = Field(max_length=7)
    idx: int
    household_id: str | None = Field(default=None, max_length=36)
    # The event form of this version (None for a void) and its content hash.
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    content_hash: str | None = Field(default=None, max_length=64)
    raw: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime | None = _now_column()


class RejectedRecord(DatasyncBase, table=True):
    """A record of a batch that was not accepted, with the reason and the raw row."""

    __tablename__ = "rejected_records"
    __table_args__ = (Index("ix_rejected_records_batch", "source", "batch_id", "idx"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    source: str = Field(max_length=20)
    batch_id: str = Field(max_length=100)
    idx: int
    record_id: str | None = Field(default=None, max_length=64)
    field: str = Field(max_length=64)
    message: str = Field(sa_column=Column(Text, nullable=False))
    raw: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    code: str | None = Field(default=None, max_length=40)
    message_zh: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    line: int | None = None  # the Excel row number, for a file
    column_header: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class PersonIndex(DatasyncBase, table=True):
    """id_hash → household, rebuilt from `registry.households` snapshots. A person claimed
    by two households for a moment (a move seen half-way) resolves to the latest claim."""

    __tablename__ = "person_index"
    __table_args__ = (Index("ix_person_index_id_hash", "id_hash", "since"),)

    household_id: str = Field(primary_key=True, max_length=36)
    id_hash: str = Field(primary_key=True, max_length=64)
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class HouseholdVersion(DatasyncBase, table=True):
    """The newest registry snapshot version applied per household (stale ones are
    skipped), and the household's village: a matched record is seen only in its regions."""

    __tablename__ = "household_versions"

    household_id: str = Field(primary_key=True, max_length=36)
    version: int
    region_code: str | None = Field(default=None, max_length=12)
    applied_at: datetime | None = _now_column()


class MappingProfile(DatasyncBase, table=True):
    """A county's column mapping for one source's files (映射配置), one row per version:
    file header → field, and the header-row and sheet hints. The newest version is the
    one files are read with; each batch records the version it used."""

    __tablename__ = "mapping_profiles"

    source: str = Field(primary_key=True, max_length=20)
    version: int = Field(primary_key=True)
    columns: dict[str, str] = Field(sa_column=Column(JSONB, nullable=False))
    header_row: int | None = None
    header_rows: int | None = None
    sheet: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=500)
    created_by: str = Field(max_length=200)
    created_at: datetime | None = _now_column()


class LateNotice(DatasyncBase, table=True):
    """A delivery.late event already emitted for a source and period (emitted once)."""

    __tablename__ = "late_notices"

    source: str = Field(primary_key=True, max_length=20)
    period: str = Field(primary_key=True, max_length=7)
    due_on: date
    notified_at: datetime | None = _now_column()


# --- API schemas ---------------------------------------------------------------------


class BatchCreate(RequestModel):
    """A JSON batch: `records` use the field names of DESIGN.md (or the Chinese ones).
    (The route reads JSON itself, record by record; this model documents the body.)"""

    batch_id: str = PydanticField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:\-]+$")
    period: PeriodText = PydanticField(examples=["2026-10"])
    records: list[dict[str, Any]] = PydanticField(min_length=1, max_length=MAX_JSON_RECORDS)


class RecordError(BaseModel):
    """A rejected record: `index` in the batch; for a file, `row` as Excel numbers it and
    `column` the header as written; `value` as sent (ID numbers and names masked);
    `code` in English for programs, `message` English, `message_zh` Chinese."""

    index: int
    record_id: str | None
    field: str
    message: str
    code: str | None = None
    message_zh: str | None = None
    row: int | None = None
    column: str | None = None
    value: str | None = None


class ErrorList(BaseModel):
    items: list[RecordError]
    next_cursor: str | None


class BatchSummary(BaseModel):
    batch_id: str
    source: str
    period: str
    received: int
    accepted: int
    duplicates: int
    rejected: int
    matched: int
    unmatched: int
    errors: list[RecordError]
    errors_total: int = 0
    corrected: int = 0  # of `accepted`: corrections (更正) of records received before
    voided: int = 0  # of `accepted`: voids (作废)
    on_time: bool | None = None
    due_on: date | None = None
    # A file's: totals/footer rows skipped, where the table was found, how record ids
    # were made ("column 结算流水号" or "derived: …"), the mapping profile version used.
    skipped: int = 0
    format: str | None = None
    encoding: str | None = None
    sheet: str | None = None
    header_row: int | None = None
    header_rows: int | None = None
    record_id_rule: str | None = None
    profile_version: int | None = None


class BatchPublic(BatchSummary):
    format: str | None
    filename: str | None
    submitted_by: str
    received_at: datetime
    status: str


class BatchList(BaseModel):
    items: list[BatchPublic]
    next_cursor: str | None


class UnmatchedRecord(BaseModel):
    source: str
    record_id: str
    batch_id: str
    period: str
    id_number: str  # masked unless the client has registry:pii
    name: str | None
    received_at: datetime
    id_hash: str | None = None  # the person's reference in events and enrolment checks


class UnmatchedList(BaseModel):
    items: list[UnmatchedRecord]
    next_cursor: str | None


class RawRecord(BaseModel):
    index: int
    record_id: str | None
    outcome: str  # accepted, rejected, or (a later version) corrected or voided
    id_number: str | None
    household_id: str | None
    field: str | None = None
    message: str | None = None
    raw: dict[str, Any] | None


class RecordVersionPublic(BaseModel):
    revision: int
    action: str  # original, correction, void
    batch_id: str
    period: str
    index: int
    received_at: datetime
    data: dict[str, Any] | None  # the event form (id_hash, no ID number); None for a void
    raw: dict[str, Any] | None  # as the department sent it: only with registry:pii


class RecordHistory(BaseModel):
    """A record's versions, oldest first, and where it stands now."""

    source: str
    record_id: str
    household_id: str | None
    id_number: str  # masked unless the client has registry:pii
    revision: int
    voided: bool
    items: list[RecordVersionPublic]


class RawRecordList(BaseModel):
    items: list[RawRecord]
    next_cursor: str | None


class ProfileCreate(RequestModel):
    """A new mapping profile version: `columns` maps a file header (as the department
    writes it) to a field of the source; `header_row` (the header's first Excel row),
    `header_rows` (how many rows it spans) and `sheet` help find the table."""

    columns: dict[str, str] = PydanticField(max_length=200)
    header_row: int | None = PydanticField(default=None, ge=1, le=30)
    header_rows: int | None = PydanticField(default=None, ge=1, le=3)
    sheet: str | None = PydanticField(default=None, min_length=1, max_length=100)
    note: str | None = PydanticField(default=None, max_length=500)


class ProfilePublic(BaseModel):
    source: str
    version: int
    columns: dict[str, str]
    header_row: int | None
    header_rows: int | None
    sheet: str | None
    note: str | None
    created_by: str
    created_at: datetime


class ProfileList(BaseModel):
    items: list[ProfilePublic]


class PreviewColumn(BaseModel):
    column: int  # 1-based, as Excel's A=1
    header: str  # as written ("基金支付/统筹基金支付" for a layered header)
    field: str | None


class Preview(BaseModel):
    """What a file would give, nothing stored: where its table is, how its columns map,
    its first rows as parsed (ID numbers masked) and its row errors."""

    source: str
    format: str
    encoding: str | None
    sheets: list[str]
    sheet: str | None
    header_row: int
    header_rows: int
    columns: list[PreviewColumn]
    unmapped: list[str]
    missing: list[str]
    derived: list[str]
    record_id_rule: str
    profile_version: int | None
    received: int
    valid: int
    rejected: int
    skipped: int
    rows: list[dict[str, Any]]
    errors: list[RecordError]


class Delivery(BaseModel):
    source: str
    department: str
    period: str
    due_on: date | None
    status: str  # delivered, due, late, not_scheduled
    delivered: bool
    late: bool
    on_time: bool | None
    batches: int
    records_accepted: int
    first_received_at: datetime | None
    last_received_at: datetime | None


class DeliveryList(BaseModel):
    period: str
    items: list[Delivery]
