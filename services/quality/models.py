"""Tables of the quality database and its API schemas.

The read model (one household's snapshot, built only from events; quality never reads
another service's database):
- `quality_households`: the latest registry snapshot of each household;
- `quality_persons`: which household lists which person (`id_hash`), to find one person
  registered in two households;
- `quality_departed`: members removed from a household, with the date and reason;
- `quality_records`: department records matched to a household, by (source, record_id),
  at their newest revision (corrections replace, voids leave a skipped tombstone);
- `quality_risk`: the latest risk assessment, and since when the household is at risk;
- `quality_decisions`, `quality_tasks`: assistance's monitoring decisions and tasks;
- `quality_measures`, `quality_grants`, `quality_visits`: assistance's plans' measures,
  grants and contacts (走访), by day.

What the audit says:
- `quality_findings`: one row per time a rule fired on a household (open → closed, or
  accepted as an exception); at most one open or accepted row per (household, rule);
- `quality_sweeps`: full checks of the county (on demand and nightly), resumable at their
  cursor, with the counts by town × category at their end.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from backstop.requests import RequestModel, fold


class QualityBase(SQLModel, registry=registry()):
    """Base of every quality table: its own metadata, so its migrations see only these."""


metadata = QualityBase.metadata

households = Table(
    "quality_households",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("region_code", String(12), nullable=False),
    Column("town_code", String(9), nullable=False),
    Column("snapshot_version", Integer, nullable=False),
    # The registry snapshot without the contacts' names and phones (only their roles).
    Column("snapshot", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_quality_households_region", "region_code"),
)

persons = Table(
    "quality_persons",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("id_hash", String(64), primary_key=True),
    Index("ix_quality_persons_id_hash", "id_hash"),
)

departed = Table(
    "quality_departed",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("id_hash", String(64), primary_key=True),
    Column("removed_on", Date, nullable=False),
    Column("reason", String(200)),
)

records = Table(
    "quality_records",
    metadata,
    Column("source", String(20), primary_key=True),
    Column("record_id", String(100), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("id_hash", String(64), nullable=False),
    Column("occurred_on", Date, nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    # Source-specific fields, amounts as exact decimal strings.
    Column("detail", JSONB, nullable=False),
    # datasync's revision: a correction (更正) replaces the row only when newer; a void
    # (作废) leaves a tombstone the rules skip and no older version can undo.
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("voided", Boolean, nullable=False, server_default="false"),
    Index("ix_quality_records_household", "household_id"),
)

risk = Table(
    "quality_risk",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("level", String(10), nullable=False),
    Column("factors", JSONB, nullable=False),
    Column("assessed_at", DateTime(timezone=True), nullable=False),
    Column("at_risk_since", Date),
)

decisions = Table(
    "quality_decisions",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("kind", String(20), primary_key=True),  # monitoring_started | risk_eliminated
    Column("household_id", String(36), nullable=False),
    Column("decided_on", Date, nullable=False),
    Column("method", String(10)),
    Column("risk_factors", JSONB, nullable=False),
    Index("ix_quality_decisions_household", "household_id"),
)

tasks = Table(
    "quality_tasks",
    metadata,
    Column("task_id", String(36), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(10), nullable=False),
    Column("opened_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("overdue", Boolean, nullable=False, server_default="false"),
    Index("ix_quality_tasks_household", "household_id"),
)

measures = Table(
    "quality_measures",
    metadata,
    Column("measure_id", String(36), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("category", String(30), nullable=False),
    Column("start_on", Date, nullable=False),
    Column("end_on", Date, nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Index("ix_quality_measures_household", "household_id"),
)

grants = Table(
    "quality_grants",
    metadata,
    Column("grant_id", String(36), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("granted_on", Date, nullable=False),
    Index("ix_quality_grants_household", "household_id"),
)

visits = Table(
    "quality_visits",
    metadata,
    Column("household_id", String(36), primary_key=True),
    Column("visited_on", Date, primary_key=True),
)

findings = Table(
    "quality_findings",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("household_id", String(36), nullable=False),
    Column("region_code", String(12), nullable=False),
    Column("town_code", String(9), nullable=False),
    Column("rule_code", String(10), nullable=False),
    Column("category", String(20), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("status", String(10), nullable=False),  # open | closed | accepted
    Column("message", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("ruleset_version", String(20), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("accepted_by", String(100)),
    Column("accepted_client", String(200)),
    Column("accepted_reason", Text),
    Column("accepted_at", DateTime(timezone=True)),
    # One live finding per household and rule; closed ones stay as history.
    Index(
        "uq_quality_findings_live",
        "household_id",
        "rule_code",
        unique=True,
        postgresql_where=text("status IN ('open', 'accepted')"),
    ),
    Index("ix_quality_findings_region", "region_code", "id"),
    Index("ix_quality_findings_status_region", "status", "region_code"),
)

sweeps = Table(
    "quality_sweeps",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("trigger", String(10), nullable=False),  # manual | nightly
    Column("run_on", Date, nullable=False),  # the county's date it was asked for
    Column("region_prefix", String(12), nullable=False, server_default=""),
    Column("requested_by", String(200), nullable=False),
    Column("status", String(10), nullable=False),  # pending | running | done
    Column("cursor", String(36), nullable=False, server_default=""),
    Column("households", Integer, nullable=False, server_default="0"),
    Column("opened", Integer, nullable=False, server_default="0"),
    Column("closed", Integer, nullable=False, server_default="0"),
    Column("counts", JSONB),  # {town_code: {category: open findings}} at the end
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_quality_sweeps_status", "status", "id"),
    # At most one nightly sweep per county day, however many replicas ask.
    Index(
        "uq_quality_sweeps_nightly",
        "run_on",
        unique=True,
        postgresql_where=text("trigger = 'nightly'"),
    ),
)


# Days the escalation of long-open error findings ran (once a county day, any replica).
escalations = Table(
    "quality_escalations",
    metadata,
    Column("run_on", Date, primary_key=True),
    Column("ran_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


# --- API schemas --------------------------------------------------------------------

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class RulePublic(BaseModel):
    code: str
    category: str
    category_label: str
    severity: Literal["error", "warning", "hint"]
    severity_label: str
    title: str
    message: str = Field(description="Chinese message template, filled from the evidence")
    fix: str


class CatalogPublic(BaseModel):
    ruleset_version: str
    categories: dict[str, str]
    items: list[RulePublic]


class FindingPublic(BaseModel):
    id: int
    household_id: str
    region_code: str
    town_code: str
    rule_code: str
    category: str
    severity: str
    status: Literal["open", "closed", "accepted"]
    title: str
    message: str
    fix: str
    evidence: dict[str, Any]
    ruleset_version: str
    opened_at: datetime
    closed_at: datetime | None
    accepted_by: str | None
    accepted_client: str | None
    accepted_reason: str | None
    accepted_at: datetime | None


class AcceptException(RequestModel):
    """Marking a finding as an accepted exception (例外), by county staff."""

    accepted_by: str = Field(min_length=1, max_length=100, description="who accepts (name)")
    reason: str = Field(min_length=2, max_length=2000, description="why the data is right")


class SweepCreate(RequestModel):
    region_prefix: Annotated[str, BeforeValidator(fold)] = Field(
        "", pattern=r"^([0-9]{2,12})?$", description="only households under this region code"
    )


class SweepPublic(BaseModel):
    id: int
    trigger: str
    run_on: date
    region_prefix: str
    requested_by: str
    status: str
    households: int
    opened: int
    closed: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TownSummary(BaseModel):
    town_code: str
    total: int
    errors: int
    by_category: dict[str, int]
    last_sweep_total: int | None = Field(description="open findings at the end of the last sweep")
    change: int | None = Field(description="total minus last_sweep_total")


class SummaryPublic(BaseModel):
    categories: dict[str, str]
    towns: list[TownSummary]
    total: int
    last_sweep: SweepPublic | None
