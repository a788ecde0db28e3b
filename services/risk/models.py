"""Tables of the risk database and their Create/Public schemas.

- `risk_households`: the read model of registry snapshots (latest version only).
- `risk_records`: department records, unique by (source, record_id), so a replay never
  counts a cost twice; a record may arrive before its household is known. A correction
  (更正) replaces the row when its revision is newer; a void (作废) leaves a tombstone
  (`voided`) that no older version can bring back, and that no sum counts.
- `risk_current`: each household's latest assessment (what lists and alerts look at).
- `risk_assessments`: the history, one row per change, with the policy version used.
- `risk_policies`: policy versions, append-only.
- `risk_rescore_jobs`: the re-score after a new policy version, with its cursor.
- `risk_unregistered_records` / `risk_unregistered_people`: rigid costs of people not in
  the register, and what each was last flagged with (unregistered.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from services.risk.domain import LEVEL_LABELS, Level, Policy


class RiskBase(SQLModel, registry=registry()):
    """Base of every risk table: its own metadata, so its migrations see only these."""


metadata = RiskBase.metadata

households = Table(
    "risk_households",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("region_code", String(12), nullable=False),
    Column("town_code", String(9), nullable=False),
    Column("type", String(20), nullable=False),
    Column("snapshot_version", Integer, nullable=False),
    Column("source_event_id", String(36), nullable=False),
    # [{person_id, id_hash, birth_date, special_groups, labor_capacity, schooling,
    #   medical_insurance}]
    Column("members", JSONB, nullable=False),
    Column("incomes", JSONB, nullable=False),  # [{year, total, per_capita}] newest first
    Column("guarantees", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

records = Table(
    "risk_records",
    metadata,
    Column("source", String(20), primary_key=True),
    Column("record_id", String(100), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("id_hash", String(64), nullable=False, server_default=""),
    Column("occurred_on", Date, nullable=False),
    Column("amount", Float, nullable=False),
    Column("housing_damaged", Boolean, nullable=False, server_default="false"),
    Column("kind", String(40)),
    Column("status", String(20)),
    Column("enrolled", Boolean),
    Column("batch_id", String(100), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # datasync's revision of the record (1 as first received, +1 per correction or void)
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("voided", Boolean, nullable=False, server_default="false"),
    # Covering: a household's live records are read by an index-only scan (migrations
    # 0003, 0005).
    Index(
        "ix_risk_records_household_features",
        "household_id",
        "occurred_on",
        postgresql_include=[
            "source",
            "record_id",
            "amount",
            "id_hash",
            "housing_damaged",
            "kind",
            "status",
            "enrolled",
        ],
        postgresql_where=text("NOT voided"),
    ),
)

current = Table(
    "risk_current",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("region_code", String(12), nullable=False),
    Column("level", String(10), nullable=False),
    Column("score", Integer, nullable=False),
    Column("factors", JSONB, nullable=False),
    Column("per_capita_income", Float),
    Column("income_line", Float, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("assessed_at", DateTime(timezone=True), nullable=False),
    Column("assessment_id", BigInteger, nullable=False),
    Index("ix_risk_current_level_region", "level", "region_code"),
    Index("ix_risk_current_region", "region_code"),
    Index("ix_risk_current_policy", "policy_version"),
)

assessments = Table(
    "risk_assessments",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("region_code", String(12), nullable=False),
    Column("level", String(10), nullable=False),
    Column("previous_level", String(10)),
    Column("score", Integer, nullable=False),
    Column("previous_score", Integer),
    Column("factors", JSONB, nullable=False),
    Column("per_capita_income", Float),
    Column("income_line", Float, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("assessed_at", DateTime(timezone=True), nullable=False),
    Column("trigger", String(200), nullable=False),  # event type + id, or rescore job
    Column("correlation_id", String(100)),
    Index("ix_risk_assessments_household", "household_id", "id"),
)

policies = Table(
    "risk_policies",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("policy", JSONB, nullable=False),
    Column("author", String(200), nullable=False),
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

rescore_jobs = Table(
    "risk_rescore_jobs",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("policy_version", Integer, nullable=False),
    Column("status", String(20), nullable=False),  # pending | running | done | superseded
    Column("cursor", String(36), nullable=False, server_default=""),
    Column("phase", String(20), nullable=False, server_default="scan"),  # scan | stragglers
    Column("total", Integer, nullable=False, server_default="0"),
    Column("processed", Integer, nullable=False, server_default="0"),
    Column("changed", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_risk_rescore_jobs_status", "status", "id"),
)

# People not in the register (unregistered.py): their rigid costs, kept apart from the
# households' records, and what each was last flagged with.
unregistered_records = Table(
    "risk_unregistered_records",
    metadata,
    Column("source", String(20), primary_key=True),
    Column("record_id", String(100), primary_key=True),
    Column("id_hash", String(64), nullable=False, index=True),
    Column("occurred_on", Date, nullable=False),
    Column("amount", Float, nullable=False),
    Column("batch_id", String(100), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The newest revision seen (更正 replaces, 作废 leaves a tombstone), as risk_records.
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("voided", Boolean, nullable=False, server_default="false"),
)

unregistered_people = Table(
    "risk_unregistered_people",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("flagged_sources", JSONB, nullable=False),  # record refs last flagged with
    Column("factors", JSONB, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("flagged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


# --- API schemas --------------------------------------------------------------------


class FactorPublic(BaseModel):
    code: str
    points: int
    evidence: str
    sources: list[str] = Field(
        default_factory=list,
        description="the events and department records the factor came from "
        "(registry:<event id>, medical:<record id>, …)",
    )


class RiskPublic(BaseModel):
    household_id: str
    region_code: str
    level: Level
    level_label: str
    score: int
    factors: list[FactorPublic]
    per_capita_income: float | None
    income_line: float
    policy_version: int
    assessed_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> RiskPublic:
        return cls(
            household_id=row.household_id,
            region_code=row.region_code,
            level=row.level,
            level_label=LEVEL_LABELS[row.level],
            score=row.score,
            factors=[FactorPublic(**f) for f in row.factors],
            per_capita_income=row.per_capita_income,
            income_line=row.income_line,
            policy_version=row.policy_version,
            assessed_at=row.assessed_at,
        )


class AssessmentPublic(RiskPublic):
    id: int
    previous_level: Level | None
    previous_score: int | None
    trigger: str
    correlation_id: str | None

    @classmethod
    def from_history(cls, row: Any) -> AssessmentPublic:
        base = RiskPublic.from_row(row).model_dump()
        return cls(
            **base,
            id=row.id,
            previous_level=row.previous_level,
            previous_score=row.previous_score,
            trigger=row.trigger,
            correlation_id=row.correlation_id,
        )


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PolicyPut(Policy):
    """The body of PUT /v1/policy: a whole policy (omitted fields take the defaults)
    and a note saying why it changed."""

    note: str | None = Field(None, max_length=2000)


class PolicyPublic(BaseModel):
    version: int
    author: str
    note: str | None
    created_at: datetime
    policy: Policy


class SimulateSample(BaseModel):
    household_id: str
    region_code: str
    level: Level
    score: int
    factors: list[str]
    current_level: Level | None


class SimulationPublic(BaseModel):
    households: int
    policy_version_current: int
    by_level: dict[str, int]
    by_town: dict[str, dict[str, int]]
    changes: dict[str, int] = Field(description="'<current level>→<proposed level>' → count")
    samples: dict[str, list[SimulateSample]]


class RescorePublic(BaseModel):
    job_id: int
    policy_version: int
    status: str
    phase: str
    total: int
    processed: int
    changed: int
    progress: float
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
