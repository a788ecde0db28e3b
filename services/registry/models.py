"""Tables of the registry database and their Create/Public schemas."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field as TField
from sqlmodel import SQLModel

from backstop.contracts.policy import LEGACY_CONTACT_ROLES, ContactRole, SpecialGroup
from backstop.requests import Amount, IdNumberText, Name, Occurred, Phone, RequestModel, fold

HouseholdType = Literal["alleviated", "unstable", "marginal", "sudden_hardship", "ordinary"]
MonitoringStatus = Literal["none", "monitored", "eliminated"]
Relation = Literal["head", "spouse", "child", "parent", "other"]
LaborCapacity = Literal["full", "partial", "none"]
# 劳动技能, 健康状况, 务工状况 (services/registry/domain.py has the Chinese terms).
LaborSkill = Literal["skilled", "ordinary", "weak", "lost", "none"]
HealthStatus = Literal["healthy", "chronic_illness", "serious_illness", "disabled"]
WorkStatus = Literal[
    "in_town", "in_county", "in_province", "out_of_province", "abroad", "other", "not_working"
]
# A member's facts from the national system's export (null: not known), in the person
# table, the API and every snapshot: 劳动技能, 健康状况, 务工状况, 务工时间（月）, and
# 大病保险, 商业补充医疗保险, 基本养老保险 (城乡居民 or 职工).
NATIONAL_MEMBER_FIELDS: tuple[str, ...] = (
    "labor_skill", "health_status", "work_status", "work_months",
    "critical_illness_insurance", "supplementary_insurance", "pension_insurance",
)  # fmt: skip
Schooling = Literal[
    "preschool", "primary", "junior", "senior", "vocational", "college", "out_of_school", "none"
]
GuaranteeItem = Literal[
    "food", "clothing", "compulsory_education", "basic_medical", "housing", "drinking_water"
]
GuaranteeStatus = Literal["ok", "possible_issue", "prominent_issue"]
EliminationMethod = Literal["assisted", "natural"]


class RegistryBase(SQLModel, registry=registry()):
    """Base of every registry table: its own metadata, so its migrations see only these."""


metadata = RegistryBase.metadata


class Region(RegistryBase, table=True):
    """A town (镇/街道, 9 digits) or village (村/社区, 12 digits) of the county."""

    __tablename__ = "region"
    code: str = TField(sa_column=Column(String(12), primary_key=True))
    name: str = TField(sa_column=Column(String(100), nullable=False))
    level: str = TField(sa_column=Column(String(10), nullable=False))  # town / village
    parent_code: str = TField(sa_column=Column(String(12), nullable=False, index=True))


class Household(RegistryBase, table=True):
    __tablename__ = "household"
    __table_args__ = (
        Index(
            "ix_household_region_code",
            "region_code",
            postgresql_ops={"region_code": "text_pattern_ops"},
        ),
        Index("ix_household_type", "type"),
        Index("ix_household_monitoring_status", "monitoring_status"),
        Index("ix_household_updated_at", "updated_at", "id"),  # the province's sync
    )
    id: uuid.UUID = TField(sa_column=Column(Uuid, primary_key=True))
    household_number: str | None = TField(
        default=None, sa_column=Column(String(40), unique=True, nullable=True)
    )
    region_code: str = TField(sa_column=Column(String(12), nullable=False))
    town_code: str = TField(sa_column=Column(String(9), nullable=False))
    type: str = TField(sa_column=Column(String(20), nullable=False))
    policy_enjoying: bool = TField(default=False, sa_column=Column(Boolean, nullable=False))
    monitoring_status: str = TField(default="none", sa_column=Column(String(12), nullable=False))
    monitoring_since: date | None = TField(default=None, sa_column=Column(Date))
    monitoring_ended_on: date | None = TField(default=None, sa_column=Column(Date))
    elimination_method: str | None = TField(default=None, sa_column=Column(String(10)))
    elimination_reason: str | None = TField(default=None, sa_column=Column(String(500)))
    monitoring_case_id: str | None = TField(default=None, sa_column=Column(String(64)))
    exit_year: int | None = TField(default=None, sa_column=Column(SmallInteger))  # 脱贫年度
    # {item: {"status": ..., "verified_on": "YYYY-MM-DD" | null}}
    guarantees: dict[str, Any] = TField(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    version: int = TField(default=1, sa_column=Column(Integer, nullable=False))
    created_at: datetime = TField(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    updated_at: datetime = TField(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class Person(RegistryBase, table=True):
    """A person of the register. `household_id` is null once removed (deceased, married
    out ...); a move changes it and keeps `id`, so the person's history follows them."""

    __tablename__ = "person"
    __table_args__ = (Index("ix_person_special_groups", "special_groups", postgresql_using="gin"),)
    id: uuid.UUID = TField(sa_column=Column(Uuid, primary_key=True))
    household_id: uuid.UUID | None = TField(
        default=None,
        sa_column=Column(Uuid, ForeignKey("household.id"), nullable=True, index=True),
    )
    id_number: str = TField(sa_column=Column(String(18), nullable=False, unique=True))
    # HMAC of the ID number, for events. Not indexed: the registry finds people by number.
    id_hash: str = TField(sa_column=Column(String(64), nullable=False))
    name: str = TField(sa_column=Column(String(100), nullable=False))
    relation: str = TField(sa_column=Column(String(10), nullable=False))
    sex: str = TField(sa_column=Column(String(6), nullable=False))
    birth_date: date = TField(sa_column=Column(Date, nullable=False))
    special_groups: list[str] = TField(
        default_factory=list,
        sa_column=Column(ARRAY(String(30)), nullable=False, server_default="{}"),
    )
    labor_capacity: str = TField(default="full", sa_column=Column(String(10), nullable=False))
    schooling: str | None = TField(default=None, sa_column=Column(String(20)))
    medical_insurance: bool = TField(default=True, sa_column=Column(Boolean, nullable=False))
    labor_skill: str | None = TField(default=None, sa_column=Column(String(10)))
    health_status: str | None = TField(default=None, sa_column=Column(String(20)))
    work_status: str | None = TField(default=None, sa_column=Column(String(20)))
    work_months: int | None = TField(default=None, sa_column=Column(SmallInteger))
    critical_illness_insurance: bool | None = TField(default=None, sa_column=Column(Boolean))
    supplementary_insurance: bool | None = TField(default=None, sa_column=Column(Boolean))
    pension_insurance: bool | None = TField(default=None, sa_column=Column(Boolean))
    removed_reason: str | None = TField(default=None, sa_column=Column(String(200)))


class IncomeRecord(RegistryBase, table=True):
    """A year's household net income and its parts, yuan."""

    __tablename__ = "income"
    household_id: uuid.UUID = TField(
        sa_column=Column(Uuid, ForeignKey("household.id"), primary_key=True)
    )
    year: int = TField(sa_column=Column(Integer, primary_key=True))
    # Exact yuan (numeric(14,2), migration 0006; floats until then).
    total: Decimal = TField(sa_column=Column(Numeric(14, 2), nullable=False))
    wage: Decimal | None = TField(default=None, sa_column=Column(Numeric(14, 2)))
    business: Decimal | None = TField(default=None, sa_column=Column(Numeric(14, 2)))
    transfer: Decimal | None = TField(default=None, sa_column=Column(Numeric(14, 2)))
    property: Decimal | None = TField(default=None, sa_column=Column(Numeric(14, 2)))
    # Members the year's income was earned by: its per-capita figure divides by these.
    household_size: int | None = TField(default=None, sa_column=Column(SmallInteger))


class Contact(RegistryBase, table=True):
    """A key contact (重点联系人) of a household."""

    __tablename__ = "contact"
    id: int | None = TField(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    household_id: uuid.UUID = TField(
        sa_column=Column(Uuid, ForeignKey("household.id"), nullable=False, index=True)
    )
    role: str = TField(sa_column=Column(String(20), nullable=False))
    name: str = TField(sa_column=Column(String(100), nullable=False))
    phone: str = TField(sa_column=Column(String(20), nullable=False))
    unit: str | None = TField(default=None, sa_column=Column(String(100)))


class HistoryEntry(RegistryBase, table=True):
    """Who changed what in a household, when. ID numbers appear masked only."""

    __tablename__ = "history"
    __table_args__ = (
        # Only the entries about a person (not, say, each household's creation).
        Index(
            "ix_history_person_id",
            "person_id",
            postgresql_where=text("person_id IS NOT NULL"),
        ),
    )
    id: int | None = TField(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    household_id: uuid.UUID = TField(sa_column=Column(Uuid, nullable=False, index=True))
    person_id: uuid.UUID | None = TField(default=None, sa_column=Column(Uuid))
    at: datetime = TField(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    actor: str = TField(sa_column=Column(String(100), nullable=False))
    action: str = TField(sa_column=Column(String(40), nullable=False))
    changes: dict[str, Any] = TField(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default="{}")
    )
    version: int = TField(sa_column=Column(Integer, nullable=False))


# Core tables, for set-based reads and writes (the handlers use SQLAlchemy Core).
household_table = cast(Table, Household.__table__)  # type: ignore[attr-defined]
person_table = cast(Table, Person.__table__)  # type: ignore[attr-defined]
income_table = cast(Table, IncomeRecord.__table__)  # type: ignore[attr-defined]
contact_table = cast(Table, Contact.__table__)  # type: ignore[attr-defined]
history_table = cast(Table, HistoryEntry.__table__)  # type: ignore[attr-defined]
region_table = cast(Table, Region.__table__)  # type: ignore[attr-defined]


# --- Schemas ----------------------------------------------------------------------------


class AnnualIncome(RequestModel):
    """Household net income of one year, yuan; parts optional (total = their sum)."""

    year: int = Field(ge=2000, le=2100)
    total: Amount | None = None
    wage: Amount | None = None
    business: Amount | None = None
    transfer: Amount | None = None
    property: Amount | None = None


class IncomeRow(RequestModel):
    """One household's income in a yearly import; parts optional (total = their sum)."""

    household_id: uuid.UUID
    total: Amount | None = None
    wage: Amount | None = None
    business: Amount | None = None
    transfer: Amount | None = None
    property: Amount | None = None


class IncomeImport(RequestModel):
    """年度收入更新: one year's incomes of existing households."""

    year: int = Field(ge=2000, le=2100)
    incomes: list[IncomeRow] = Field(min_length=1, max_length=5000)


# Bounds of a household: members (a 户 of more than 30 is a data error) and contacts.
MAX_MEMBERS = 30
MAX_CONTACTS = 10
MAX_SPECIAL_GROUPS = 5  # as many as there are groups


class MemberCreate(RequestModel):
    id_number: IdNumberText
    name: Name
    relation: Relation
    special_groups: list[SpecialGroup] = Field(default_factory=list, max_length=MAX_SPECIAL_GROUPS)
    labor_capacity: LaborCapacity = "full"
    schooling: Schooling | None = None
    medical_insurance: bool = True
    labor_skill: LaborSkill | None = None
    health_status: HealthStatus | None = None
    work_status: WorkStatus | None = None
    work_months: int | None = Field(default=None, ge=0, le=12)
    critical_illness_insurance: bool | None = None  # 大病保险
    supplementary_insurance: bool | None = None  # 商业补充医疗保险
    pension_insurance: bool | None = None  # 城乡居民 (or 职工) 基本养老保险


class GuaranteeIn(RequestModel):
    status: GuaranteeStatus
    verified_on: Occurred | None = None


def seed_title(role: object) -> object:
    """Roles sent in the register's earlier words are taken as the seed's titles."""
    return LEGACY_CONTACT_ROLES.get(role, role) if isinstance(role, str) else role


class ContactIn(RequestModel):
    # 重点联系人: 帮扶单位/镇党委政府负责人 for 监测户, 镇包村干部/驻村工作队员/村包片干部 for 边缘户
    role: Annotated[ContactRole, BeforeValidator(seed_title)]
    name: Name
    phone: Phone
    unit: str | None = Field(default=None, max_length=100)


# Codes as sent (checked against the register by the handlers), full-width folded.
RegionCodeText = Annotated[str, BeforeValidator(fold), Field(min_length=1, max_length=20)]
HouseholdNumber = Annotated[str, BeforeValidator(fold)]


class HouseholdCreate(RequestModel):
    region_code: RegionCodeText
    type: HouseholdType
    policy_enjoying: bool = False
    household_number: HouseholdNumber | None = Field(default=None, min_length=1, max_length=40)
    exit_year: int | None = Field(default=None, ge=2013, le=2100)  # 脱贫年度
    annual_income: AnnualIncome | None = None
    members: list[MemberCreate] = Field(min_length=1, max_length=MAX_MEMBERS)
    guarantees: dict[GuaranteeItem, GuaranteeStatus | GuaranteeIn] = Field(default_factory=dict)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=MAX_CONTACTS)


class HouseholdPatch(RequestModel):
    """Fields to change; what is left out stays as it is."""

    region_code: RegionCodeText | None = None
    type: HouseholdType | None = None
    policy_enjoying: bool | None = None
    household_number: HouseholdNumber | None = Field(default=None, min_length=1, max_length=40)
    exit_year: int | None = Field(default=None, ge=2013, le=2100)
    guarantees: dict[GuaranteeItem, GuaranteeStatus | GuaranteeIn] | None = None
    # A status correction (e.g. pushed by the provincial platform).
    monitoring_status: MonitoringStatus | None = None
    elimination_method: EliminationMethod | None = None
    reason: str | None = Field(default=None, max_length=500)


class MemberPatch(RequestModel):
    name: Name | None = None
    relation: Relation | None = None
    # When `relation` makes this member the head (户主变更): what the former head becomes.
    former_head_relation: Literal["spouse", "child", "parent", "other"] | None = None
    special_groups: list[SpecialGroup] | None = Field(default=None, max_length=MAX_SPECIAL_GROUPS)
    labor_capacity: LaborCapacity | None = None
    schooling: Schooling | None = None
    medical_insurance: bool | None = None
    labor_skill: LaborSkill | None = None
    health_status: HealthStatus | None = None
    work_status: WorkStatus | None = None
    work_months: int | None = Field(default=None, ge=0, le=12)
    critical_illness_insurance: bool | None = None
    supplementary_insurance: bool | None = None
    pension_insurance: bool | None = None


class MemberMove(RequestModel):
    to_household_id: uuid.UUID
    relation: Relation = "other"


class ContactsIn(RequestModel):
    contacts: list[ContactIn] = Field(max_length=MAX_CONTACTS)


class MemberPublic(BaseModel):
    person_id: str
    id_number: str  # masked without registry:pii
    name: str
    relation: str
    sex: str
    # Without registry:pii only the year: the date would fill the masked ID's middle.
    birth_date: date | None
    birth_year: int
    special_groups: list[str]
    labor_capacity: str
    schooling: str | None
    medical_insurance: bool
    labor_skill: str | None = None
    health_status: str | None = None
    work_status: str | None = None
    work_months: int | None = None
    critical_illness_insurance: bool | None = None
    supplementary_insurance: bool | None = None
    pension_insurance: bool | None = None


class IncomePublic(BaseModel):
    year: int
    total: float
    wage: float | None = None
    business: float | None = None
    transfer: float | None = None
    property: float | None = None
    per_capita: float


class ContactPublic(BaseModel):
    role: str
    name: str
    phone: str  # 138****5678 without registry:pii
    unit: str | None = None


class MonitoringPublic(BaseModel):
    status: MonitoringStatus
    since: date | None = None
    ended_on: date | None = None
    elimination_method: EliminationMethod | None = None
    elimination_reason: str | None = None
    case_id: str | None = None


class HouseholdPublic(BaseModel):
    id: str
    household_number: str | None
    region_code: str
    town_code: str
    type: HouseholdType
    policy_enjoying: bool
    exit_year: int | None = None  # 脱贫年度
    monitoring_status: MonitoringStatus
    monitoring: MonitoringPublic
    annual_income: IncomePublic | None  # the latest year
    incomes: list[IncomePublic]  # newest first
    members: list[MemberPublic]
    guarantees: dict[str, GuaranteeIn]
    contacts: list[ContactPublic]
    contact_missing: bool  # the policy's key contact is not named
    version: int
    created_at: datetime
    updated_at: datetime


class HouseholdCreated(BaseModel):
    id: str
    version: int


class HouseholdPage(BaseModel):
    items: list[HouseholdPublic]
    next_cursor: str | None


class PersonLocation(BaseModel):
    household_id: str
    person_id: str


class PersonLookup(RequestModel):
    id_number: IdNumberText


class RegionPublic(BaseModel):
    code: str
    name: str
    level: str
    parent_code: str


class RegionPage(BaseModel):
    items: list[RegionPublic]


class HistoryPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    person_id: str | None
    changes: dict[str, Any]
    version: int


class HistoryPage(BaseModel):
    items: list[HistoryPublic]
    next_cursor: str | None


class ImportError_(BaseModel):
    row: int
    household_number: str | None
    field: str
    message: str
    column: str | None = None  # the field's header as the file writes it


class ImportSummary(BaseModel):
    rows: int
    households: int
    created: int
    existing: int  # already registered under the same household number, nothing changed
    # Already registered and changed by this file (a newer export): each one history entry.
    updated: int = 0
    rejected: int
    errors: list[ImportError_]
    errors_truncated: bool = False
