"""月汇报 (seed 四(一): 月走访、月汇报): each town's report of a month, with each 帮扶责任人's
part in it, computed from the month's visits, findings, tasks and measures
(`monthly.py` holds the rules). The town signs it off once the month has ended (its own
town only); the signed report is stored as it was then and never changes. A report not
signed by its due date leaves as `backstop.assistance.monthly_report.overdue.v1`, again
every `monthly_report_repeat_days`; notify reminds the town office and escalates to the
town leader, and signing emits `monthly_report.signed`, which cancels what is pending."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CheckConstraint, Column, DateTime, Index, UniqueConstraint, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field as SQLField
from sqlmodel import col

from backstop import outbox
from backstop.app import SessionDep, SessionsDep
from backstop.auth import Level, Principal, require
from backstop.contracts.assistance import MonthlyReportOverdue, MonthlyReportSigned
from backstop.contracts.policy import due_for_monthly_contact
from backstop.db import SessionFactory, one_of, unit_of_work
from backstop.errors import Problem, invalid
from backstop.requests import Period, period_param
from services.assistance import domain
from services.assistance.common import claim_once, load_policy, make_assistance_event
from services.assistance.models import (
    AssistanceBase,
    Household,
    Measure,
    Plan,
    RiskLevel,
    Strict,
    Task,
    Visit,
    new_id,
    utcnow,
)
from services.assistance.monthly import (
    MeasureFact,
    MonthlyTownReport,
    SignalCounts,
    Status,
    TownMonth,
    VisitFact,
    due_on,
    problems_of,
    town_report,
)
from services.assistance.visits import households_due_contact

router = APIRouter(prefix="/v1/reports/monthly", tags=["reports"])
READ = require("assistance:read")
WRITE = require("assistance:write")


class MonthlyReport(AssistanceBase, table=True):
    """A town's report of a month: `due` once the month has ended, `signed_off` with the
    report as it stood when the town signed it (never changed after)."""

    __tablename__ = "monthly_reports"
    __table_args__ = (
        UniqueConstraint("town_code", "period", name="uq_monthly_reports_town_period"),
        Index("ix_monthly_reports_due", "due_on", postgresql_where=text("status = 'due'")),
        CheckConstraint("status IN ('due', 'signed_off')", name="ck_monthly_reports_status"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=36)
    town_code: str = SQLField(max_length=9)
    period: str = SQLField(max_length=7)
    status: str = SQLField(default="due", max_length=10)
    due_on: date
    report: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    signed_off_by: str | None = SQLField(default=None, max_length=100)
    signed_off_client: str | None = SQLField(default=None, max_length=100)  # the token's sub
    signed_off_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    overdue_emitted_at: datetime | None = SQLField(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


# ---------------------------------------------------------------------- the facts

Where = Callable[[Any], Any]  # a region column → "a region this report covers"


async def gather(session: AsyncSession, *, period: Period, where: Where) -> dict[str, TownMonth]:
    """The month's facts of every town `where` covers, by town code."""
    start, end = period.first_day, period.last_day + timedelta(days=1)
    due = await households_due_contact(
        session, select(Household).where(where(col(Household.region_code)))
    )
    monitored = set(
        (
            await session.execute(
                select(col(Household.household_id)).where(
                    where(col(Household.region_code)),
                    col(Household.monitoring_status) == "monitored",
                )
            )
        ).scalars()
    )
    levels: dict[str, str] = dict(
        (
            await session.execute(
                select(col(RiskLevel.household_id), col(RiskLevel.level)).where(
                    where(col(RiskLevel.region_code)),
                    col(RiskLevel.level).in_(("watch", "at_risk")),
                )
            )
        ).all()
    )
    rows = await session.execute(
        # Columns, not entities: a town's month is thousands of visits.
        select(
            col(Visit.region_code),
            col(Visit.id),
            col(Visit.household_id),
            col(Visit.visitor),
            col(Visit.visited_on),
            col(Visit.channel),
            col(Visit.findings),
            col(Visit.guarantees),
        ).where(
            where(col(Visit.region_code)),
            col(Visit.visited_on) >= start,
            col(Visit.visited_on) < end,
        )
    )
    visits = [
        (region[:9], VisitFact(visit_id, household_id, visitor, day, channel, findings,
                               problems_of(guarantees)))
        for region, visit_id, household_id, visitor, day, channel, findings, guarantees
        in rows.tuples()
    ]  # fmt: skip
    tasks: dict[str, list[date | None]] = defaultdict(list)
    with_problems = sorted({v.household_id for _, v in visits if v.problems})
    if with_problems:
        closings = await session.execute(
            select(col(Task.household_id), col(Task.completed_at)).where(
                one_of(col(Task.household_id), with_problems)
            )
        )
        for household_id, completed_at in closings.tuples():
            tasks[household_id].append(_day(completed_at))
    measures = await session.execute(
        select(col(Measure.id), col(Measure.household_id), col(Plan.region_code))
        .join(Plan, col(Plan.id) == col(Measure.plan_id))
        .where(
            where(col(Plan.region_code)),
            col(Measure.start_on) < end,
            col(Measure.end_on) >= start,
        )
    )

    towns: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for d in due:
        towns[d.town_code]["due"].append(d)
    for town_code, v in visits:
        towns[town_code]["visits"].append(v)
    for measure_id, household_id, region_code in measures.tuples():
        towns[region_code[:9]]["measures"].append(MeasureFact(measure_id, household_id))
    return {
        town_code: TownMonth(
            town_code=town_code,
            period=period,
            due=facts["due"],
            visits=facts["visits"],
            measures=facts["measures"],
            tasks=tasks,
            risk_levels=levels,
            monitoring={h: "monitored" for h in monitored},
        )
        for town_code, facts in towns.items()
    }


def _day(moment: datetime | None) -> date | None:
    return moment.astimezone(domain.CHINA).date() if moment else None


async def _stored(session: AsyncSession, period: Period, towns: Where) -> dict[str, MonthlyReport]:
    rows = await session.execute(
        select(MonthlyReport).where(
            col(MonthlyReport.period) == str(period), towns(col(MonthlyReport.town_code))
        )
    )
    return {r.town_code: r for r in rows.scalars()}


async def town_reports(
    session: AsyncSession, *, period: Period, where: Where, towns: tuple[str, ...] = ()
) -> dict[str, MonthlyTownReport]:
    """Each town's report (those with facts or a row, and `towns` however empty): the
    signed one as stored, the others computed now."""
    policy = await load_policy(session)
    stored = await _stored(session, period, where)
    facts = await gather(session, period=period, where=where)
    today, now = domain.today(), utcnow()
    reports = {}
    for town_code in sorted(facts.keys() | stored.keys() | set(towns)):
        row = stored.get(town_code)
        if row is not None and row.status == "signed_off":
            reports[town_code] = MonthlyTownReport.model_validate(row.report)
            continue
        reports[town_code] = town_report(
            facts.get(town_code) or TownMonth(town_code=town_code, period=period),
            visits_per_day_limit=policy.visits_per_day_limit,
            due=row.due_on if row else due_on(period, policy.monthly_report_due_days),
            today=today,
            now=now,
        )
    return reports


async def one_town(session: AsyncSession, period: Period, town_code: str) -> MonthlyTownReport:
    reports = await town_reports(
        session,
        period=period,
        where=lambda column: column.startswith(town_code),
        towns=(town_code,),
    )
    return reports[town_code]


# ---------------------------------------------------------------------- commands


async def sign_off(
    sessions: SessionFactory,
    *,
    period: Period,
    town_code: str,
    signed_off_by: str,
    remarks: str | None,
    principal: Principal,
) -> MonthlyTownReport:
    """The town signs its report of an ended month: stored as computed now, once (409)."""
    if principal.level is not Level.TOWN:
        held = principal.level.name.lower() if principal.level else "no"
        raise Problem(
            403, f"a town signs off its own monthly report; this client has {held}-level authority"
        )
    principal.require_region(town_code)
    today = domain.today()
    if today <= period.last_day:
        raise invalid(["path", "period"], "the month has not ended yet; its report is signed after")
    async with unit_of_work(sessions) as session:
        report = await one_town(session, period, town_code)
        if report.status == "signed_off":
            raise Problem(409, f"the {period} report of town {town_code} is already signed off")
        now = utcnow()
        report = report.model_copy(
            update={
                "status": "signed_off",
                "signed_off_by": signed_off_by,
                "signed_off_at": now,
                "days_late": max(0, (today - report.due_on).days),
                "remarks": remarks,
                "computed_at": now,
            }
        )
        values = {
            "status": "signed_off",
            "report": report.model_dump(mode="json"),
            "signed_off_by": signed_off_by,
            "signed_off_client": principal.sub,
            "signed_off_at": now,
        }
        stmt = insert(MonthlyReport).values(
            id=new_id(), town_code=town_code, period=str(period), due_on=report.due_on, **values
        )
        report_id = await session.scalar(
            stmt.on_conflict_do_update(
                constraint="uq_monthly_reports_town_period",
                set_=values,
                where=col(MonthlyReport.status) == "due",
            ).returning(col(MonthlyReport.id))
        )
        if report_id is None:  # signed by another request meanwhile
            raise Problem(409, f"the {period} report of town {town_code} is already signed off")
        signed = MonthlyReportSigned(
            report_id=report_id,
            town_code=town_code,
            period=str(period),
            signed_off_by=signed_off_by,
            signed_on=today,
            signals=report.counts().model_dump(),
            **report.headline(),
        )
        await outbox.publish(session, make_assistance_event(signed, town_code))
    return report


async def open_due_reports(session: AsyncSession, period: Period, due: date) -> None:
    """A `due` row for every town with households due a contact (the kernel's rule)."""
    kinds = await session.execute(
        select(col(Household.town_code), col(Household.type), col(Household.monitoring_status))
        .distinct()
        .where(col(Household.town_code) != "")
    )
    towns = sorted(
        {
            town
            for town, htype, status in kinds.tuples()
            if due_for_monthly_contact(household_type=htype, monitoring_status=status)
        }
    )
    if towns:
        rows = [
            {"id": new_id(), "town_code": t, "period": str(period), "status": "due", "due_on": due,
             "report": {}}
            for t in towns
        ]  # fmt: skip
        await session.execute(
            insert(MonthlyReport)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_monthly_reports_town_period")
        )


async def emit_late_reports(sessions: SessionFactory, *, on: date | None = None) -> int:
    """Last month's reports fall due once it has ended; each one not signed by its due
    date leaves as monthly_report.overdue, again every `monthly_report_repeat_days` until
    signed (each round once, with two replicas)."""
    on = on or domain.today()
    async with unit_of_work(sessions) as session:
        policy = await load_policy(session)
        last = Period.of(on).shift(-1)
        await open_due_reports(session, last, due_on(last, policy.monthly_report_due_days))
        every = policy.monthly_report_repeat_days
        late = await claim_once(
            session,
            MonthlyReport,
            "overdue_emitted_at",
            col(MonthlyReport.status) == "due",
            col(MonthlyReport.due_on) < on,
            again_after=timedelta(days=every),
        )
        await outbox.publish_many(
            session,
            [
                make_assistance_event(
                    MonthlyReportOverdue(
                        report_id=r.id,
                        town_code=r.town_code,
                        period=r.period,
                        due_on=r.due_on,
                        days_late=(on - r.due_on).days,
                        reminder=((on - r.due_on).days - 1) // every + 1,
                        escalate_after_days=policy.monthly_report_escalate_days,
                    ),
                    r.town_code,
                )
                for r in late
            ],
        )
    return len(late)


# ------------------------------------------------------------------------ routes

PeriodPath = Annotated[str, Path(description="the month, YYYY-MM", examples=["2026-11"])]
TownPath = Annotated[str, Path(pattern=r"^\d{9}$", description="9-digit town code")]


def _period(text: str) -> Period:
    period = period_param(text, ["path", "period"])
    if period.first_day > domain.today():
        raise invalid(["path", "period"], "the month is in the future")
    return period


class TownMonthStatus(BaseModel):
    town_code: str
    status: Status
    due_on: date
    signed_off_by: str | None
    signed_off_at: datetime | None
    days_late: int
    due: int
    contacted: int
    not_reached: int
    problems_found: int
    problems_passed_on: int
    signals: SignalCounts


class MonthlyOverview(BaseModel):
    """Every town's 月汇报 of the month the client may see: its status and headline counts."""

    period: str
    towns: list[TownMonthStatus]
    signed_off: int
    late: int

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "period": "2026-11",
                    "towns": [
                        {
                            "town_code": "441881101",
                            "status": "late",
                            "due_on": "2026-12-05",
                            "signed_off_by": None,
                            "signed_off_at": None,
                            "days_late": 0,
                            "due": 120,
                            "contacted": 117,
                            "not_reached": 3,
                            "problems_found": 4,
                            "problems_passed_on": 3,
                            "signals": {
                                "empty_findings": 2,
                                "copied_findings": 6,
                                "busy_days": 1,
                                "remote_for_home": 1,
                            },
                        }
                    ],
                    "signed_off": 0,
                    "late": 1,
                }
            ]
        }
    )


class MonthlySignOff(Strict):
    """The town's leader signs (签字) the report the town office compiled."""

    signed_off_by: str = Field(min_length=1, max_length=100)
    remarks: str | None = Field(default=None, max_length=2000)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"signed_off_by": "镇长 陈某", "remarks": "3户外出务工，已电话联系"}]
        }
    )


@router.get("/{period}", response_model=MonthlyOverview)
async def get_overview(
    period: PeriodPath, session: SessionDep, principal: Principal = READ
) -> MonthlyOverview:
    """月汇报 of every town the client sees in full: signed, due or late, with counts."""
    month = _period(period)
    reports = await town_reports(session, period=month, where=principal.region_clause)
    towns = [
        TownMonthStatus(
            town_code=r.town_code,
            status=r.status,
            due_on=r.due_on,
            signed_off_by=r.signed_off_by,
            signed_off_at=r.signed_off_at,
            signals=r.counts(),
            **r.headline(),
        )
        for r in reports.values()
        if principal.can_see(r.town_code)
    ]
    return MonthlyOverview(
        period=str(month),
        towns=towns,
        signed_off=sum(t.status == "signed_off" for t in towns),
        late=sum(t.status == "late" for t in towns),
    )


@router.get("/{period}/towns/{town_code}", response_model=MonthlyTownReport)
async def get_town_report(
    period: PeriodPath, town_code: TownPath, session: SessionDep, principal: Principal = READ
) -> MonthlyTownReport:
    """One town's 月汇报 with each 帮扶责任人's part and the visit-quality signals; the
    signed report once the town has signed it."""
    month = _period(period)
    principal.require_region(town_code)
    return await one_town(session, month, town_code)


@router.post(
    "/{period}/towns/{town_code}/sign-off", response_model=MonthlyTownReport, status_code=201
)
async def post_sign_off(
    period: PeriodPath,
    town_code: TownPath,
    body: MonthlySignOff,
    sessions: SessionsDep,
    principal: Principal = WRITE,
) -> MonthlyTownReport:
    """The town submits and signs off its report of an ended month (a town-level client of
    that town only); stored as it stands and never changed. Signing twice is a 409."""
    return await sign_off(
        sessions,
        period=_period(period),
        town_code=town_code,
        signed_off_by=body.signed_off_by,
        remarks=body.remarks,
        principal=principal,
    )
