"""`registry.households`: every event carries the household's full snapshot, so a consumer
rebuilds its read model from the latest event alone. ID numbers never appear: members
carry `id_hash` (HMAC-SHA256 under BACKSTOP_PII_KEY)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from backstop.events import event_type

TOPIC = "registry.households"

HouseholdType = Literal["alleviated", "unstable", "marginal", "sudden_hardship", "ordinary"]
MonitoringStatus = Literal["none", "monitored", "eliminated"]
GuaranteeStatus = Literal["ok", "possible_issue", "prominent_issue"]
# 两不愁三保障 + 饮水安全
GuaranteeItem = Literal[
    "food", "clothing", "compulsory_education", "basic_medical", "housing", "drinking_water"
]


class MemberSnapshot(BaseModel):
    person_id: str
    id_hash: str
    relation: Literal["head", "spouse", "child", "parent", "other"]
    sex: Literal["male", "female"]
    birth_date: date
    special_groups: list[str] = Field(default_factory=list)
    labor_capacity: Literal["full", "partial", "none"] = "full"
    schooling: str | None = None  # e.g. "primary", "junior", "out_of_school", "none"
    medical_insurance: bool = True
    # From the national monitoring system's export; None where not known.
    # 劳动技能: skilled, ordinary, weak, lost (丧失劳动力), none (无劳动力).
    labor_skill: str | None = None
    health_status: str | None = (
        None  # 健康状况: healthy, chronic_illness, serious_illness, disabled
    )
    work_status: str | None = (
        None  # 务工状况: in_town … out_of_province, abroad, other, not_working
    )
    work_months: int | None = None  # 务工时间（月）
    critical_illness_insurance: bool | None = None  # 大病保险
    supplementary_insurance: bool | None = None  # 商业补充医疗保险
    pension_insurance: bool | None = None  # 基本养老保险 (城乡居民 or 职工)


class IncomeSnapshot(BaseModel):
    year: int
    total: float
    per_capita: float
    # The parts of the net income, when known (工资性/生产经营性/转移性/财产性收入).
    wage: float | None = None
    business: float | None = None
    transfer: float | None = None
    property: float | None = None


class ContactSnapshot(BaseModel):
    role: str  # backstop.contracts.policy.ContactRole: the seed's titles (重点联系人)
    name: str
    phone: str  # masked, 138****5678: events carry no phone number in clear
    unit: str | None = None
    # The number sealed under BACKSTOP_SECRETS_KEY (backstop.crypto): only notify opens
    # it, to text the contact. None in events written before phones were masked.
    phone_sealed: str | None = None


class HouseholdSnapshot(BaseModel):
    household_id: str
    household_number: str | None = None
    region_code: str  # 12-digit village code
    town_code: str  # first 9 digits
    type: HouseholdType
    policy_enjoying: bool = False
    exit_year: int | None = None  # 脱贫年度
    monitoring_status: MonitoringStatus = "none"
    monitoring_since: date | None = None
    monitoring_ended_on: date | None = None
    elimination_method: Literal["assisted", "natural"] | None = None  # 帮扶消除 / 自然消除
    members: list[MemberSnapshot]
    incomes: list[IncomeSnapshot] = Field(default_factory=list)  # newest first
    guarantees: dict[str, GuaranteeStatus] = Field(default_factory=dict)
    guarantees_verified_on: dict[str, date] = Field(default_factory=dict)
    contacts: list[ContactSnapshot] = Field(default_factory=list)
    version: int = 1  # increases with every change, so consumers can ignore stale snapshots


class HouseholdEvent(BaseModel):
    household: HouseholdSnapshot
    changed_by: str | None = None


@event_type("backstop.registry.household.created.v1", topic=TOPIC)
class HouseholdCreated(HouseholdEvent):
    pass


@event_type("backstop.registry.household.updated.v1", topic=TOPIC)
class HouseholdUpdated(HouseholdEvent):
    changed_fields: list[str] = Field(default_factory=list)


@event_type("backstop.registry.member.added.v1", topic=TOPIC)
class MemberAdded(HouseholdEvent):
    person_id: str


@event_type("backstop.registry.member.removed.v1", topic=TOPIC)
class MemberRemoved(HouseholdEvent):
    person_id: str
    id_hash: str
    reason: str | None = None


@event_type("backstop.registry.member.moved.v1", topic=TOPIC)
class MemberMoved(HouseholdEvent):
    """Emitted for the receiving household; the sending one gets MemberRemoved."""

    person_id: str
    from_household_id: str


@event_type("backstop.registry.monitoring.changed.v1", topic=TOPIC)
class MonitoringChanged(HouseholdEvent):
    previous_status: MonitoringStatus
    elimination_method: Literal["assisted", "natural"] | None = None  # 帮扶消除 / 自然消除
    # True for a county-level correction by PATCH (with its reason), outside the procedure
    # (认定程序) whose decisions come from assistance.
    correction: bool = False
    reason: str | None = None
