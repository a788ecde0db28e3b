"""`risk.assessments` (internal) and `risk.alerts` (public to other counties: no names,
no ID numbers)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from backstop.events import event_type

ASSESSMENTS_TOPIC = "risk.assessments"
ALERTS_TOPIC = "risk.alerts"
Level = Literal["none", "watch", "at_risk"]


class FactorData(BaseModel):
    code: str
    points: int
    evidence: str
    # Added: the events and department records the factor came from
    # ("registry:<event id>", "medical:<record id>", ...). No names, no ID numbers.
    sources: list[str] = Field(default_factory=list)


@event_type("backstop.risk.assessment.changed.v1", topic=ASSESSMENTS_TOPIC)
class AssessmentChanged(BaseModel):
    household_id: str
    region_code: str
    level: Level
    previous_level: Level | None
    score: int
    previous_score: int | None
    factors: list[FactorData]
    per_capita_income: float | None
    income_line: float
    policy_version: int
    assessed_at: datetime


class AlertData(BaseModel):
    household_id: str
    region_code: str
    level: Level
    previous_level: Level | None
    score: int
    factors: list[str]  # factor codes only
    assessed_at: datetime
    policy_version: int


@event_type("backstop.risk.alert.raised.v1", topic=ALERTS_TOPIC)
class AlertRaised(AlertData):
    pass


@event_type("backstop.risk.alert.cleared.v1", topic=ALERTS_TOPIC)
class AlertCleared(AlertData):
    pass


@event_type("backstop.risk.alert.renewed.v1", topic=ALERTS_TOPIC)
class AlertRenewed(AlertData):
    """A household still `at_risk` with new evidence (`new_evidence`: factor codes that
    appeared, or a medical, disaster or school cost with a new record): a new reason for a
    home check (入户核实)."""

    new_evidence: list[str]


@event_type("backstop.risk.unregistered.flagged.v1", topic=ASSESSMENTS_TOPIC)
class UnregisteredFlagged(BaseModel):
    """A person not in the register whose 12-month medical, disaster or school costs
    reached the warning line (seed 二(一): 因病、因灾、因学支出达到监测预警线…符合条件的，
    及时纳入建档立卡范围). Sent once, and again only with new evidence (`new_evidence`:
    the factor codes with records not sent before). Key and subject = `id_hash`; no
    name, no ID number. Internal (`risk.assessments`), never on the public alerts topic."""

    id_hash: str
    factors: list[FactorData]
    new_evidence: list[str]
    assessed_at: datetime
    policy_version: int
