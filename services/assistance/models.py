"""Tables of the assistance database and their Create/Public schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Numeric,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from backstop.contracts.policy import GUARANTEE_ITEMS
from backstop.requests import Amount, Money, Occurred, RegionCode, RequestModel, fold


class AssistanceBase(SQLModel, registry=registry()):
    """Base of every assistance table: its own metadata, so its migrations see only these."""


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(nullable: bool = False) -> Any:
    column = Column(DateTime(timezone=True), nullable=nullable)
    if nullable:
        return SQLField(default=None, sa_column=column)
    return SQLField(default_factory=utcnow, sa_column=column)


def _json(default: Any = dict) -> Any:
    return SQLField(default_factory=default, sa_column=Column(JSONB, nullable=False))


def _money(nullable: bool = False) -> Any:
    return SQLField(default=None, sa_column=Column(Numeric(14, 2), nullable=nullable))


# ------------------------------------------------------------------------- tables


class PolicyVersion(AssistanceBase, table=True):
    __tablename__ = "policy_versions"

    version: int = SQLField(primary_key=True)
    body: dict[str, Any] = _json()
    changed_by: str
    changed_at: datetime = _ts()


class Household(AssistanceBase, table=True):
    """Read model of registry's households (latest HouseholdSnapshot, stale ones ignored)."""

    __tablename__ = "households"

    household_id: str = SQLField(primary_key=True, max_length=36)
    region_code: str = SQLField(max_length=12, index=True)
    town_code: str = SQLField(max_length=9, index=True)
    type: str = SQLField(max_length=20)
    monitoring_status: str = SQLField(max_length=20)
    monitoring_since: date | None = None
    version: int
    snapshot: dict[str, Any] = _json()


class Task(AssistanceBase, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        # At most one open verification task per household (DESIGN.md).
        Index(
            "uq_tasks_open_verification",
            "household_id",
            unique=True,
            postgresql_where=text("status = 'open' AND kind = 'verification'"),
        ),
        Index("ix_tasks_due_open", "due_on", postgresql_where=text("status = 'open'")),
        # Lists page in opened order (common.opened_page).
        Index("ix_tasks_opened", "opened_at", "id"),
        # 回头看: one review task per household and campaign, however often it is launched.
        Index(
            "uq_tasks_campaign_household",
            "campaign_id",
            "household_id",
            unique=True,
            postgresql_where=text("campaign_id IS NOT NULL"),
        ),
        CheckConstraint("status IN ('open', 'done', 'cancelled')", name="ck_tasks_status"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = SQLField(max_length=20)
    household_id: str = SQLField(max_length=36, index=True)
    region_code: str = SQLField(max_length=12, index=True)
    status: str = SQLField(default="open", max_length=10)
    assignee_type: str = SQLField(max_length=10)
    assignee_code: str = SQLField(max_length=20)
    due_on: date
    reason: str
    factors: list[str] = _json(list)
    origin: str = SQLField(max_length=20)  # "alert", "clue", "campaign", ...
    origin_ref: str | None = SQLField(default=None, max_length=64)
    needs_precheck: bool = False  # 县级初核 before the insurer verifies
    prechecked_by: str | None = None
    prechecked_at: datetime | None = _ts(nullable=True)
    # 集中交由人保公司: the insurer's due date counts from here.
    handed_over_by: str | None = None
    handed_over_at: datetime | None = _ts(nullable=True)
    opened_at: datetime = _ts()
    claimed_by: str | None = None
    claimed_at: datetime | None = _ts(nullable=True)
    completed_at: datetime | None = _ts(nullable=True)
    outcome: str | None = SQLField(default=None, max_length=20)
    verified_by: str | None = None
    notes: str | None = None
    guarantees: dict[str, str] = _json()
    overdue_emitted_at: datetime | None = _ts(nullable=True)
    campaign_id: str | None = SQLField(default=None, max_length=36)


class Case(AssistanceBase, table=True):
    """An identification (认定) or risk-elimination (风险消除) procedure."""

    __tablename__ = "cases"
    __table_args__ = (
        Index(
            "uq_cases_one_in_progress",
            "household_id",
            "kind",
            unique=True,
            postgresql_where=text("status = 'in_progress'"),
        ),
        Index("ix_cases_opened", "opened_at", "id"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = SQLField(max_length=20)  # "identification" | "elimination"
    household_id: str = SQLField(max_length=36, index=True)
    region_code: str = SQLField(max_length=12, index=True)
    status: str = SQLField(default="in_progress", max_length=20)  # approved / rejected
    task_id: str | None = SQLField(default=None, max_length=36)
    monitoring_type: str | None = SQLField(default=None, max_length=20)
    risk_factors: list[str] = _json(list)
    elimination_method: str | None = SQLField(default=None, max_length=10)
    reason: str | None = None
    opened_by: str
    opened_at: datetime = _ts()
    decided_on: date | None = None
    decided_by: str | None = None


class CaseStep(AssistanceBase, table=True):
    __tablename__ = "case_steps"
    __table_args__ = (UniqueConstraint("case_id", "step", name="uq_case_steps_once"),)

    id: int | None = SQLField(default=None, primary_key=True)
    case_id: str = SQLField(foreign_key="cases.id", max_length=36, index=True)
    step: str = SQLField(max_length=20)
    acted_by: str
    acted_on: date
    recorded_at: datetime = _ts()
    passed: bool
    details: dict[str, Any] = _json()


class Visit(AssistanceBase, table=True):
    __tablename__ = "visits"
    __table_args__ = (Index("ix_visits_household_on", "household_id", "visited_on"),)

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    household_id: str = SQLField(max_length=36)
    region_code: str = SQLField(max_length=12, index=True)
    channel: str = SQLField(max_length=10)
    visitor: str
    visited_on: date = SQLField(index=True)
    findings: str
    guarantees: dict[str, str] = _json()
    recorded_at: datetime = _ts()


class Plan(AssistanceBase, table=True):
    __tablename__ = "plans"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    household_id: str = SQLField(max_length=36, index=True)
    region_code: str = SQLField(max_length=12, index=True)
    tier: str = SQLField(max_length=20)
    year: int
    created_by: str
    created_at: datetime = _ts()


class Measure(AssistanceBase, table=True):
    __tablename__ = "measures"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    plan_id: str = SQLField(foreign_key="plans.id", max_length=36, index=True)
    household_id: str = SQLField(max_length=36, index=True)
    category: str = SQLField(max_length=30)
    description: str
    start_on: date
    end_on: date
    amount: Decimal = _money()
    responsible_unit: str


class Fund(AssistanceBase, table=True):
    __tablename__ = "funds"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_funds_balance_not_negative"),)

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    code: str = SQLField(unique=True, max_length=40)
    name: str
    level: str = SQLField(max_length=10)  # city | town
    kind: str = SQLField(max_length=10)  # charity | named | town
    town_code: str | None = SQLField(default=None, max_length=9)
    balance: Decimal = _money()
    created_at: datetime = _ts()


class LedgerEntry(AssistanceBase, table=True):
    """Double entry: every transaction's entries sum to zero. Account `fund:<id>` is the
    fund's cash; `donations:<id>` and `grants:<household>` are its counterparts."""

    __tablename__ = "ledger_entries"

    id: int | None = SQLField(default=None, primary_key=True)
    txn_id: str = SQLField(max_length=36, index=True)
    fund_id: str = SQLField(foreign_key="funds.id", max_length=36, index=True)
    account: str = SQLField(max_length=60)
    amount: Decimal = _money()  # + debit, - credit
    kind: str = SQLField(max_length=10)  # deposit | grant
    memo: str
    posted_on: date
    posted_at: datetime = _ts()


class Grant(AssistanceBase, table=True):
    __tablename__ = "grants"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    household_id: str = SQLField(max_length=36, index=True)
    region_code: str = SQLField(max_length=12, index=True)
    amount: Decimal = _money()
    city_fund_id: str = SQLField(foreign_key="funds.id", max_length=36)
    town_fund_id: str = SQLField(foreign_key="funds.id", max_length=36)
    city_part: Decimal = _money()
    town_part: Decimal = _money()
    purpose: str
    granted_on: date
    granted_by: str
    override_reason: str | None = None
    created_at: datetime = _ts()


class IdempotencyKey(AssistanceBase, table=True):
    __tablename__ = "idempotency_keys"

    key: str = SQLField(primary_key=True, max_length=200)
    request_hash: str = SQLField(max_length=64)
    status_code: int
    response: dict[str, Any] = _json()
    created_at: datetime = _ts()


class SupervisionIssue(AssistanceBase, table=True):
    __tablename__ = "supervision_issues"
    __table_args__ = (
        Index("ix_issues_deadline_open", "deadline", postgresql_where=text("status = 'open'")),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    region_code: str = SQLField(max_length=12, index=True)
    source: str = SQLField(max_length=20)
    summary: str
    responsible_unit: str
    deadline: date
    found_on: date
    household_id: str | None = SQLField(default=None, max_length=36)
    status: str = SQLField(default="open", max_length=10)  # open | rectified
    reported_by: str
    created_at: datetime = _ts()
    rectified_at: datetime | None = _ts(nullable=True)
    verified_by: str | None = None
    overdue_emitted_at: datetime | None = _ts(nullable=True)


class RectificationEvidence(AssistanceBase, table=True):
    __tablename__ = "rectification_evidence"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    issue_id: str = SQLField(foreign_key="supervision_issues.id", max_length=36, index=True)
    submitted_by: str
    description: str
    attachment_url: str | None = None
    submitted_at: datetime = _ts()


class AccountabilityAction(AssistanceBase, table=True):
    __tablename__ = "accountability_actions"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    issue_id: str | None = SQLField(default=None, foreign_key="supervision_issues.id")
    region_code: str = SQLField(max_length=12, index=True)
    person_name: str
    unit: str
    action: str = SQLField(max_length=20)  # interview 约谈 | accountability 问责
    reason: str
    decided_on: date
    decided_by: str
    created_at: datetime = _ts()


class Clue(AssistanceBase, table=True):
    """线索: a household or a person reported by a household, the public, a cadre or an
    inspection. The person's ID number is kept only as its HMAC and masked form."""

    __tablename__ = "clues"
    __table_args__ = (
        Index("ix_clues_accept_by", "accept_by", postgresql_where=text("status = 'received'")),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    source: str = SQLField(max_length=20)
    household_id: str | None = SQLField(default=None, max_length=36, index=True)
    region_code: str = SQLField(max_length=12, index=True)
    person_name: str | None = None
    person_id_hash: str | None = SQLField(default=None, max_length=64)
    person_id_masked: str | None = SQLField(default=None, max_length=18)
    summary: str
    concerns: list[str] = _json(list)
    anonymous: bool = False
    reporter_name: str | None = None
    reporter_phone: str | None = None
    filed_by: str = SQLField(max_length=100, index=True)
    received_at: datetime = _ts()
    accept_by: datetime = _ts()
    status: str = SQLField(default="received", max_length=10)  # accepted | closed
    accepted_by: str | None = None
    accepted_at: datetime | None = _ts(nullable=True)
    task_id: str | None = SQLField(default=None, max_length=36, index=True)
    outcome: str | None = SQLField(default=None, max_length=20)
    outcome_notes: str | None = None
    outcome_by: str | None = None
    closed_at: datetime | None = _ts(nullable=True)
    escalated_at: datetime | None = _ts(nullable=True)


class Campaign(AssistanceBase, table=True):
    """回头看: a review of a selection of households, one review task each."""

    __tablename__ = "campaigns"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    code: str = SQLField(unique=True, max_length=80)
    name: str
    region_prefix: str = SQLField(max_length=12)
    household_types: list[str] = _json(list)
    monitoring_statuses: list[str] = _json(list)
    deadline: date
    launched_by: str
    launched_at: datetime = _ts()
    # Tasks are generated a chunk at a time (one transaction each): `generating` until
    # every selected household has its task. The selection is the launcher's regions.
    status: str = SQLField(default="ready", max_length=20)
    selected: int = 0
    scope_regions: list[str] = _json(list)


# ----------------------------------------------------------------------- schemas

GuaranteeItem = Literal[
    "food", "clothing", "compulsory_education", "basic_medical", "housing", "drinking_water"
]
GuaranteeStatus = Literal["ok", "possible_issue", "prominent_issue"]


class Strict(RequestModel):
    """Base of assistance's request bodies: the kernel's rules, and no unknown fields."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# What a visit or a verification may say about members' schooling: person id → stage, at
# most one entry per member of a household (registry's MAX_MEMBERS).
SchoolingReport = dict[
    Annotated[str, Field(min_length=1, max_length=36)], Annotated[str, Field(max_length=20)]
]
MAX_SCHOOLING_ENTRIES = 30


class AssigneePublic(BaseModel):
    type: str
    code: str


class TaskPublic(BaseModel):
    id: str
    kind: str
    household_id: str
    region_code: str
    status: str  # open | done | cancelled | overdue (derived)
    due_on: date
    assignee: AssigneePublic
    reason: str
    factors: list[str]
    origin: str
    needs_precheck: bool
    prechecked_by: str | None
    handed_over_at: datetime | None = None
    opened_at: datetime
    claimed_by: str | None
    completed_at: datetime | None
    outcome: str | None
    verified_by: str | None
    notes: str | None
    guarantees: dict[str, str]
    case_id: str | None = None


class TaskPage(BaseModel):
    items: list[TaskPublic]
    next_cursor: str | None


class TaskClaim(Strict):
    claimed_by: str = Field(min_length=1, max_length=100)


class TaskPrecheck(Strict):
    checked_by: str = Field(min_length=1, max_length=100)
    passed: bool = True
    notes: str | None = Field(default=None, max_length=2000)


class TaskHandover(Strict):
    """集中交由: the county hands pre-checked cases to the insurer at once."""

    task_ids: list[Annotated[str, Field(min_length=1, max_length=36)]] = Field(
        min_length=1, max_length=500
    )
    handed_by: str = Field(min_length=1, max_length=100)


class IncomeObserved(Strict):
    year: int = Field(ge=2000, le=2100)
    total: Amount


class TaskComplete(Strict):
    """A home check's result. Its checklist is required: each of 两不愁、三保障 and 饮水安全
    (`guarantees`) and the income observed (一达标), whatever the outcome."""

    outcome: Literal["confirmed", "not_confirmed"]
    verified_by: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(default=None, max_length=4000)
    guarantees: dict[GuaranteeItem, GuaranteeStatus]
    income: IncomeObserved
    # person_id -> e.g. out_of_school
    schooling: SchoolingReport = Field(default_factory=dict, max_length=MAX_SCHOOLING_ENTRIES)
    monitoring_type: Literal["unstable", "marginal", "sudden_hardship"] | None = None

    @field_validator("guarantees")
    @classmethod
    def _every_item(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [item for item in GUARANTEE_ITEMS if item not in value]
        if missing:
            raise ValueError(
                f"the checklist lacks {', '.join(missing)}: 两不愁、三保障 and 饮水安全 are "
                "each recorded"
            )
        return value


class StepPublic(BaseModel):
    step: str
    label: str
    acted_by: str
    acted_on: date
    recorded_at: datetime
    passed: bool
    details: dict[str, Any]


class CasePublic(BaseModel):
    id: str
    kind: str
    household_id: str
    region_code: str
    status: str
    task_id: str | None
    monitoring_type: str | None
    risk_factors: list[str]
    elimination_method: str | None
    reason: str | None
    next_step: str | None
    steps: list[StepPublic]
    opened_by: str
    opened_at: datetime
    decided_on: date | None
    decided_by: str | None


class CasePage(BaseModel):
    items: list[CasePublic]
    next_cursor: str | None


class AppraisalCreate(Strict):
    """民主评议."""

    held_on: Occurred
    chaired_by: str = Field(min_length=1, max_length=100)
    attendance: int = Field(ge=1, le=10_000)
    votes_for: int = Field(ge=0, le=10_000)
    votes_against: int = Field(ge=0, le=10_000)
    notes: str | None = Field(default=None, max_length=4000)


class Objection(Strict):
    raised_on: Occurred
    summary: str = Field(min_length=1, max_length=2000)
    resolution: str | None = Field(default=None, max_length=2000)


class NoticeCreate(Strict):
    """公示."""

    start_on: date
    end_on: date
    posted_at: str = Field(min_length=1, max_length=200)  # where: 村务公开栏, ...
    recorded_by: str = Field(min_length=1, max_length=100)
    objections: list[Objection] = Field(default_factory=list, max_length=100)


class ReviewCreate(Strict):
    """乡镇审核 / 县级确认."""

    approved: bool
    reviewed_by: str = Field(min_length=1, max_length=100)
    reviewed_on: Occurred
    opinion: str | None = Field(default=None, max_length=4000)


class EliminationCreate(Strict):
    household_id: str = Field(min_length=1, max_length=36)
    method: Literal["assisted", "natural"]  # 帮扶消除 / 自然消除
    reason: str | None = Field(default=None, max_length=2000)
    requested_by: str = Field(min_length=1, max_length=100)


class VisitCreate(Strict):
    household_id: str = Field(min_length=1, max_length=36)
    channel: Literal["home", "phone", "sms", "wechat"]
    visitor: str = Field(min_length=1, max_length=100)
    visited_on: Occurred
    findings: str = Field(min_length=1, max_length=4000)
    guarantees: dict[GuaranteeItem, GuaranteeStatus] = Field(default_factory=dict)
    income: IncomeObserved | None = None
    schooling: SchoolingReport = Field(default_factory=dict, max_length=MAX_SCHOOLING_ENTRIES)


class VisitPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    household_id: str
    region_code: str
    channel: str
    visitor: str
    visited_on: date
    findings: str
    guarantees: dict[str, str]
    recorded_at: datetime


class MeasureCreate(Strict):
    category: str = Field(min_length=1, max_length=30)
    description: str = Field(min_length=1, max_length=2000)
    start_on: date
    end_on: date
    amount: Money
    responsible_unit: str = Field(min_length=1, max_length=200)


class PlanCreate(Strict):
    household_id: str = Field(min_length=1, max_length=36)
    # The household's tier comes from the register; a tier sent must agree with it.
    tier: Literal["not_enjoying", "enjoying", "monitored", "marginal"] | None = None
    year: int = Field(ge=2020, le=2100)
    created_by: str = Field(min_length=1, max_length=100)
    measures: list[MeasureCreate] = Field(min_length=1, max_length=50)


class MeasurePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    category: str
    label: str = ""
    description: str
    start_on: date
    end_on: date
    amount: Decimal
    responsible_unit: str


class PlanPublic(BaseModel):
    id: str
    household_id: str
    region_code: str
    tier: str
    year: int
    created_by: str
    created_at: datetime
    measures: list[MeasurePublic]


class FundCreate(Strict):
    code: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    level: Literal["city", "town"]
    kind: Literal["charity", "named", "town"]  # 慈善协会扶贫基金 / 冠名基金 / 镇级扶贫基金
    town_code: Annotated[str, BeforeValidator(fold), Field(pattern=r"^[0-9]{9}$")] | None = None


class FundPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    code: str
    name: str
    level: str
    kind: str
    town_code: str | None
    balance: Decimal


class DepositCreate(Strict):
    amount: Money = Field(gt=0)
    donor: str = Field(min_length=1, max_length=200)
    received_on: Occurred
    memo: str | None = Field(default=None, max_length=1000)


class GrantCreate(Strict):
    household_id: str = Field(min_length=1, max_length=36)
    amount: Money = Field(gt=0)
    purpose: str = Field(min_length=1, max_length=1000)
    granted_by: str = Field(min_length=1, max_length=100)
    granted_on: Occurred | None = None
    city_fund_id: str | None = Field(default=None, max_length=36)
    town_fund_id: str | None = Field(default=None, max_length=36)
    # The county's reason to pay a household that is not a 救助对象 from the 市镇 split.
    override_reason: str | None = Field(default=None, min_length=1, max_length=1000)


class GrantPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    household_id: str
    region_code: str
    amount: Decimal
    city_fund_id: str
    town_fund_id: str
    city_part: Decimal
    town_part: Decimal
    purpose: str
    granted_on: date
    granted_by: str
    override_reason: str | None = None


class StatementLine(BaseModel):
    txn_id: str
    posted_on: date
    kind: str
    counterparty: str
    memo: str
    amount: Decimal
    balance_after: Decimal


class FundStatement(BaseModel):
    fund: FundPublic
    date_from: date | None
    date_to: date | None
    opening_balance: Decimal
    total_in: Decimal
    total_out: Decimal
    closing_balance: Decimal
    lines: list[StatementLine]


class IssueCreate(Strict):
    region_code: RegionCode
    source: Literal["inspection", "public_report", "audit", "self_check"]
    summary: str = Field(min_length=1, max_length=4000)
    responsible_unit: str = Field(min_length=1, max_length=200)
    deadline: date
    found_on: Occurred
    household_id: str | None = Field(default=None, max_length=36)
    reported_by: str = Field(min_length=1, max_length=100)


class EvidenceCreate(Strict):
    submitted_by: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=4000)
    attachment_url: str | None = Field(default=None, max_length=1000)


class IssueClose(Strict):
    verified_by: str = Field(min_length=1, max_length=100)


class EvidencePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    submitted_by: str
    description: str
    attachment_url: str | None
    submitted_at: datetime


class IssuePublic(BaseModel):
    id: str
    region_code: str
    source: str
    summary: str
    responsible_unit: str
    deadline: date
    found_on: date
    household_id: str | None
    status: str  # open | rectified | overdue (derived)
    reported_by: str
    rectified_at: datetime | None
    verified_by: str | None
    # 限时整改: days past the deadline, kept once the issue is closed late (0 = on time)
    days_late: int = 0
    evidence: list[EvidencePublic]


class AccountabilityCreate(Strict):
    issue_id: str | None = Field(default=None, max_length=36)
    region_code: RegionCode
    person_name: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=200)
    action: Literal["interview", "accountability"]  # 约谈 / 问责
    reason: str = Field(min_length=1, max_length=4000)
    decided_on: Occurred
    decided_by: str = Field(min_length=1, max_length=100)


class AccountabilityPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    issue_id: str | None
    region_code: str
    person_name: str
    unit: str
    action: str
    reason: str
    decided_on: date
    decided_by: str


class PolicyUpdate(Strict):
    changed_by: str = Field(min_length=1, max_length=100)
    policy: dict[str, Any] = Field(max_length=100)

    @field_validator("policy")
    @classmethod
    def _not_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("policy must not be empty")
        return value


# ------------------------------------------------------- quarterly report (季度动态监测)


class RiskLevel(AssistanceBase, table=True):
    """Read model of risk's latest assessment per household (older assessed_at ignored)."""

    __tablename__ = "risk_levels"

    household_id: str = SQLField(primary_key=True, max_length=36)
    region_code: str = SQLField(max_length=12, index=True)
    level: str = SQLField(max_length=10)  # none | watch | at_risk
    score: int
    assessed_at: datetime = _ts()


class QuarterlyReport(AssistanceBase, table=True):
    """A closed quarter's report, stored as computed at closing and never changed."""

    __tablename__ = "quarterly_reports"

    quarter: str = SQLField(primary_key=True, max_length=6)  # "2026Q4"
    report: dict[str, Any] = _json()
    closed_by: str = SQLField(max_length=100)
    closed_client: str = SQLField(max_length=100)  # the token's `sub`
    closed_at: datetime = _ts()


class DataQualitySweep(AssistanceBase, table=True):
    """Read model of the quality service's sweep summaries (数据质量核查), for the quarterly
    report's 数据质量 section: the event's data as it came, one row per sweep."""

    __tablename__ = "data_quality_sweeps"
    __table_args__ = (
        Index("ix_data_quality_sweeps_region_finished", "region_prefix", "finished_at"),
    )

    sweep_id: int = SQLField(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    region_prefix: str = SQLField(max_length=12)  # "" = the whole county
    finished_at: datetime = _ts()
    summary: dict[str, Any] = _json()


# An open check, or a confirmed one whose household is not registered yet, per person.
ACTIVE_ENROLMENT_CHECK = "status = 'open' OR (outcome = 'confirmed' AND household_id IS NULL)"


class EnrolmentCheck(AssistanceBase, table=True):
    """纳入建档立卡核查: the home check of a person not in the register, opened by risk's
    flag (因病、因灾、因学 costs over the warning line) or from a clue. Not a row of
    `tasks`: those belong to a household (`task.*` events are keyed by it). The person is
    known here only by `id_hash`; their identity stays with datasync (`/v1/unmatched`)
    or on the clue. `household_id` is set once the registry adds the person."""

    __tablename__ = "enrolment_checks"
    __table_args__ = (
        Index(
            "uq_enrolment_checks_active",
            "id_hash",
            unique=True,
            postgresql_where=text(ACTIVE_ENROLMENT_CHECK),
        ),
        CheckConstraint(
            "status IN ('open', 'done', 'cancelled')", name="ck_enrolment_checks_status"
        ),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    kind: str = SQLField(default="enrolment_check", max_length=20)
    id_hash: str = SQLField(max_length=64)
    region_code: str = SQLField(max_length=12, index=True)
    status: str = SQLField(default="open", max_length=10)
    assignee_type: str = SQLField(max_length=10)  # county | town
    assignee_code: str = SQLField(max_length=20)
    due_on: date
    reason: str
    factors: list[str] = _json(list)
    evidence: list[str] = _json(list)  # "medical:<record id>", "clue:<clue id>"
    origin: str = SQLField(max_length=20)  # department | clue
    origin_ref: str | None = SQLField(default=None, max_length=64)
    clue_id: str | None = SQLField(default=None, max_length=36, index=True)
    opened_at: datetime = _ts()
    opened_by: str | None = None  # "risk" for a department case, else who turned the clue
    assigned_by: str | None = None
    assigned_at: datetime | None = _ts(nullable=True)
    completed_at: datetime | None = _ts(nullable=True)
    outcome: str | None = SQLField(default=None, max_length=20)
    verified_by: str | None = None
    notes: str | None = None
    checklist: dict[str, Any] = _json()  # 一达标、两不愁、三保障 and 饮水安全, as observed
    household_id: str | None = SQLField(default=None, max_length=36)
    linked_at: datetime | None = _ts(nullable=True)
    case_id: str | None = SQLField(default=None, max_length=36)
    overdue_emitted_at: datetime | None = _ts(nullable=True)
