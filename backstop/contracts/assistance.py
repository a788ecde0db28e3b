"""`assistance.tasks`, `assistance.decisions` and `assistance.findings`."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from backstop.events import event_type

TASKS_TOPIC = "assistance.tasks"
DECISIONS_TOPIC = "assistance.decisions"
FINDINGS_TOPIC = "assistance.findings"


class Assignee(BaseModel):
    type: Literal["town", "village", "insurer"]
    code: str


class TaskData(BaseModel):
    task_id: str
    kind: str  # "verification", "review" (回头看), ...
    household_id: str
    region_code: str
    assignee: Assignee
    due_on: date
    reason: str
    factors: list[str] = Field(default_factory=list)


@event_type("backstop.assistance.task.opened.v1", topic=TASKS_TOPIC)
class TaskOpened(TaskData):
    pass


@event_type("backstop.assistance.task.handed_over.v1", topic=TASKS_TOPIC)
class TaskHandedOver(TaskData):
    """集中交由人保公司 (seed 三(三)3): the county handed a pre-checked case to the insurer
    (`assignee`), whose `due_on` counts from the handover: notify tells the insurer."""

    handed_over_by: str
    handed_over_at: datetime


@event_type("backstop.assistance.task.completed.v1", topic=TASKS_TOPIC)
class TaskCompleted(TaskData):
    outcome: str
    verified_by: str


@event_type("backstop.assistance.task.overdue.v1", topic=TASKS_TOPIC)
class TaskOverdue(TaskData):
    days_overdue: int


class RectificationData(BaseModel):
    issue_id: str
    region_code: str
    responsible_unit: str
    deadline: date
    summary: str


@event_type("backstop.assistance.rectification.raised.v1", topic=TASKS_TOPIC)
class RectificationRaised(RectificationData):
    """A supervision issue (督导整改) was raised: the town and village are told at once
    (seed 四(三): 发现问题及时反馈镇村，限时整改到位); keyed by region."""

    found_on: date


@event_type("backstop.assistance.rectification.overdue.v1", topic=TASKS_TOPIC)
class RectificationOverdue(RectificationData):
    """A supervision issue past its deadline; keyed by region. Sent again every
    `rectification_repeat_days` until the issue is closed: `reminder` counts them."""

    reminder: int = 1


@event_type("backstop.assistance.rectification.closed.v1", topic=TASKS_TOPIC)
class RectificationClosed(RectificationData):
    """整改到位, with whether it came after the deadline (lateness is kept)."""

    rectified_on: date
    days_late: int


@event_type("backstop.assistance.clue.overdue.v1", topic=TASKS_TOPIC)
class ClueOverdue(BaseModel):
    """A clue (线索) the town has not accepted in time."""

    clue_id: str
    region_code: str
    household_id: str | None
    source: str
    received_at: datetime


@event_type("backstop.assistance.monitoring.started.v1", topic=DECISIONS_TOPIC)
class MonitoringStarted(BaseModel):
    household_id: str
    region_code: str
    case_id: str
    monitoring_type: Literal["unstable", "marginal", "sudden_hardship"]
    risk_factors: list[str]
    decided_on: date
    approved_by: str


@event_type("backstop.assistance.risk.eliminated.v1", topic=DECISIONS_TOPIC)
class RiskEliminated(BaseModel):
    household_id: str
    region_code: str
    case_id: str
    method: Literal["assisted", "natural"]  # 帮扶消除 / 自然消除
    reason: str
    decided_on: date
    approved_by: str


class IncomeFinding(BaseModel):
    year: int
    total: float


@event_type("backstop.assistance.finding.observed.v1", topic=FINDINGS_TOPIC)
class FindingObserved(BaseModel):
    """What a visit, verification or review saw; registry applies it to the household."""

    household_id: str
    region_code: str
    observed_by: str
    observed_on: date
    origin: Literal["visit", "verification", "review", "clue"]
    guarantees: dict[str, Literal["ok", "possible_issue", "prominent_issue"]] = Field(
        default_factory=dict
    )
    income: IncomeFinding | None = None
    # person_id -> schooling, e.g. a child found out of school: "out_of_school"
    schooling: dict[str, str] = Field(default_factory=dict)
    notes: str | None = None


# Added for the data-quality audit (数据质量核查): what help a household gets and when it
# was contacted. Amounts are exact decimals (JSON strings); no names, no free text.


class MeasureData(BaseModel):
    measure_id: str
    category: str  # industry, employment, education, health, social_security, ...
    start_on: date
    end_on: date
    amount: Decimal


@event_type("backstop.assistance.plan.created.v1", topic=DECISIONS_TOPIC)
class PlanCreated(BaseModel):
    """An assistance plan (帮扶计划) and its measures."""

    plan_id: str
    household_id: str
    region_code: str
    tier: str
    year: int
    measures: list[MeasureData]


@event_type("backstop.assistance.grant.paid.v1", topic=DECISIONS_TOPIC)
class GrantPaid(BaseModel):
    """A grant from the city and town funds (救助补助)."""

    grant_id: str
    household_id: str
    region_code: str
    amount: Decimal
    granted_on: date


@event_type("backstop.assistance.visit.recorded.v1", topic=TASKS_TOPIC)
class VisitRecorded(BaseModel):
    """A contact with the household (走访, or by phone, message, WeChat)."""

    visit_id: str
    household_id: str
    region_code: str
    channel: str
    visited_on: date


@event_type("backstop.assistance.warning.matched.v1", topic=TASKS_TOPIC)
class PlatformWarningMatched(BaseModel):
    """A provincial platform warning (省平台预警) matched to a household and joined to its
    verification task. risk takes a prominent_issue as evidence of the item's factor."""

    warning_id: str  # the platform's own id
    household_id: str
    region_code: str
    system: str  # classification | return_warning | marginal
    system_label: str
    item: str
    item_label: str
    factor: str  # the risk factor code the item stands for
    level: Literal["possible_issue", "prominent_issue"]
    warned_on: date
    task_id: str


@event_type("backstop.assistance.monthly_report.overdue.v1", topic=TASKS_TOPIC)
class MonthlyReportOverdue(BaseModel):
    """A town's 月汇报 (seed 四(一)) not signed off by its due date; keyed by the town code.
    Sent again every `monthly_report_repeat_days` until signed (`reminder` counts them);
    the town leader hears of each round `escalate_after_days` after the town office."""

    report_id: str
    town_code: str
    period: str  # the month, "2026-11"
    due_on: date
    days_late: int
    reminder: int = 1
    escalate_after_days: int = 3


@event_type("backstop.assistance.monthly_report.signed.v1", topic=TASKS_TOPIC)
class MonthlyReportSigned(BaseModel):
    """A town signed off its 月汇报 (late by `days_late`), with its headline counts; keyed
    by the town code. A pending escalation of the report is moot."""

    report_id: str
    town_code: str
    period: str
    signed_off_by: str
    signed_on: date
    days_late: int
    due: int  # households due a contact
    contacted: int
    not_reached: int
    problems_found: int
    problems_passed_on: int
    signals: dict[str, int] = Field(default_factory=dict)  # visit-quality signals by kind


@event_type("backstop.assistance.enrolment_check.opened.v1", topic=TASKS_TOPIC)
class EnrolmentCheckOpened(BaseModel):
    """纳入建档立卡核查 of a person not in the register, opened or handed down to a town
    (下发各镇): its assignee — the county office until it hands the check down, then the
    town — is to be reminded. Keyed by the check id (there is no household yet); no name,
    no ID number, no id_hash."""

    check_id: str
    region_code: str
    assignee_type: Literal["county", "town"]
    assignee_code: str
    due_on: date
    reason: str
    factors: list[str] = Field(default_factory=list)


@event_type("backstop.assistance.enrolment_check.overdue.v1", topic=TASKS_TOPIC)
class EnrolmentCheckOverdue(BaseModel):
    """A 纳入建档立卡核查 still open past its due date, once per due date: its office (the
    county's until handed down, then the town's) is reminded. Keyed by the check id."""

    check_id: str
    region_code: str
    due_on: date
    days_overdue: int
