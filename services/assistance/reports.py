"""The quarterly dynamic-monitoring report (季度动态监测, seed 二(二): "每季度在监测管理系统中
统一进行动态监测"), per town (9-digit code) and for the county, served as JSON for the
provincial platform and as XLSX with Chinese headers for the county office.

Per quarter (Asia/Shanghai calendar) and town:
- households by type, monitoring status and risk level (risk level from the
  `risk.assessments` read model kept here; "unassessed" when risk has not scored one);
- new inclusions (approved identifications, 县级确认 in the quarter) by monitoring type and
  risk factor, and eliminations (approved 风险消除) by method and reason;
- verification tasks and 回头看 review tasks, each opened, closed (done or cancelled) and
  overdue (past their due date in the quarter without being closed by it);
- contact compliance: households due a monthly contact (the kernel's rule) contacted by their
  重点联系人 or 帮扶责任人 (visit, phone, SMS, WeChat) at least once in every month of the
  quarter that has begun;
- grants paid: count and amount of the grant transactions in the fund ledger;
- 数据质量: the findings of the quality service's last county-wide sweep that finished
  in the quarter (open, accepted, opened and closed since the sweep before, by category
  and severity, and the change in open findings), from its sweep summaries.

Closing (`POST .../close`, county office only) stores the report as computed, and the
provincial return with it (`returns.py`); a closed quarter is read back from the store and
never changes.

The late-data rule. Every dated fact has its own date (decision date, ledger posting date)
and the moment it was recorded. It counts in its own quarter unless that quarter had
already been closed when it was recorded; then it counts in the first later quarter that
was still open at that moment (normally the next one). So a decision dated 2026-09-28 but
recorded after 2026Q3 was closed appears among 2026Q4's inclusions. Task counts use the
moments a task was opened and closed, which are recording times, so they are never late.
Household counts (type, status, risk level) are the state when the report is computed;
close a quarter soon after it ends to freeze them. A visit dated in a closed quarter is
not carried forward: it shows contact in a month of that quarter, not of the next.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop.app import SessionDep, SessionsDep
from backstop.auth import Level, Principal, require
from backstop.contracts.risk import AssessmentChanged
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import CloudEvent
from backstop.exports import XLSX, xlsx_response
from services.assistance import data_quality, domain
from services.assistance.models import (
    Case,
    CaseStep,
    Grant,
    Household,
    LedgerEntry,
    QuarterlyReport,
    RiskLevel,
    Strict,
    Task,
    Visit,
    utcnow,
)
from services.assistance.quarterly import (
    LATE_DATA_RULE,
    TASK_KINDS,
    Quarter,
    county_totals,
    empty_town,
    months_due,
    quality_entry,
    rate,
    reason_list,
    reporting_quarter,
)
from services.assistance.quarterly_xlsx import workbook_bytes
from services.assistance.visits import households_due_contact

router = APIRouter(prefix="/v1", tags=["reports"])
READ = require("assistance:read")
WRITE = require("assistance:write")

# ----------------------------------------------------------------- computing


@dataclass(frozen=True)
class Scope:
    """What the report covers: the token's regions and, optionally, one town."""

    principal: Principal
    town: str | None

    def where(self, column: Any) -> Any:
        clause = self.principal.region_clause(column)
        if self.town:
            clause = and_(clause, column.startswith(self.town))
        return clause

    def sees_town(self, town_code: str) -> bool:
        return self.principal.can_see(town_code) and (self.town is None or town_code == self.town)

    def sees_region(self, region_code: str) -> bool:
        """A village's row in the report's scope (rows of a stored county-wide return)."""
        return self.principal.can_see(region_code) and (
            self.town is None or region_code.startswith(self.town)
        )


async def closed_quarters(session: AsyncSession) -> dict[Quarter, datetime]:
    rows = await session.execute(
        select(col(QuarterlyReport.quarter), col(QuarterlyReport.closed_at))
    )
    return {Quarter.parse(q): at for q, at in rows.all()}


def dated_window(
    quarter: Quarter, closed: Mapping[Quarter, datetime], own: Any, recorded: Any
) -> Any:
    """Facts dated in the quarter, plus the earlier ones recorded after the previous
    quarter was closed (candidates for arriving late into this one)."""
    in_quarter = and_(own >= quarter.start, own < quarter.end)
    previous_closed = closed.get(quarter.previous())
    if previous_closed is None:
        return in_quarter
    return or_(in_quarter, and_(own < quarter.start, recorded > previous_closed))


def counts_here(
    quarter: Quarter, own: date, recorded_at: datetime, closed: Mapping[Quarter, datetime]
) -> bool:
    return reporting_quarter(Quarter.of(own), recorded_at, closed) == quarter


async def approved_cases(
    session: AsyncSession, *, quarter: Quarter, scope: Scope, closed: Mapping[Quarter, datetime]
) -> list[Case]:
    """Identifications and eliminations approved at 县级确认 that count in the quarter
    (dated by the decision, under the late-data rule), oldest decision first."""
    approved_at = (
        select(col(CaseStep.case_id), func.max(col(CaseStep.recorded_at)).label("recorded_at"))
        .where(col(CaseStep.step) == "county_approval", col(CaseStep.passed))
        .group_by(col(CaseStep.case_id))
        .subquery()
    )
    rows = await session.execute(
        select(Case, approved_at.c.recorded_at)
        .join(approved_at, approved_at.c.case_id == col(Case.id))
        .where(
            col(Case.status) == "approved",
            scope.where(col(Case.region_code)),
            dated_window(quarter, closed, col(Case.decided_on), approved_at.c.recorded_at),
        )
        .order_by(col(Case.decided_on), col(Case.id))
    )
    return [
        case
        for case, recorded_at in rows.all()
        if case.decided_on is not None
        and counts_here(quarter, case.decided_on, recorded_at, closed)
    ]


async def compute(
    session: AsyncSession,
    *,
    quarter: Quarter,
    scope: Scope,
    closed: Mapping[Quarter, datetime],
    today: date,
) -> dict[str, Any]:
    """The report of an open quarter as the data stands now (one entry per town)."""
    towns: dict[str, dict[str, Any]] = defaultdict(empty_town)

    # Households by type, monitoring status and risk level: the current state.
    level = func.coalesce(col(RiskLevel.level), "unassessed")
    household_rows = await session.execute(
        select(
            col(Household.town_code),
            col(Household.type),
            col(Household.monitoring_status),
            level,
            func.count(),
        )
        .select_from(Household)
        .outerjoin(RiskLevel, col(RiskLevel.household_id) == col(Household.household_id))
        .where(scope.where(col(Household.region_code)))
        .group_by(
            col(Household.town_code), col(Household.type), col(Household.monitoring_status), level
        )
    )
    for town_code, htype, status, risk_level, n in household_rows.all():
        h = towns[town_code]["households"]
        h["total"] += n
        for key, value in (
            ("by_type", htype),
            ("by_monitoring_status", status),
            ("by_risk_level", risk_level),
        ):
            h[key][value] = h[key].get(value, 0) + n

    # Inclusions and eliminations: approved at 县级确认, dated by the decision.
    reasons: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for case in await approved_cases(session, quarter=quarter, scope=scope, closed=closed):
        town = towns[domain.town_of(case.region_code)]
        if case.kind == "identification":
            inc = town["inclusions"]
            inc["total"] += 1
            mtype = case.monitoring_type or "unstable"
            inc["by_monitoring_type"][mtype] = inc["by_monitoring_type"].get(mtype, 0) + 1
            for factor in case.risk_factors:
                inc["by_factor"][factor] = inc["by_factor"].get(factor, 0) + 1
        elif case.kind == "elimination":
            elim = town["eliminations"]
            method = case.elimination_method or "natural"
            elim["total"] += 1
            elim["by_method"][method] = elim["by_method"].get(method, 0) + 1
            reasons[domain.town_of(case.region_code)][(method, case.reason or "")] += 1
    for town_code, counter in reasons.items():
        towns[town_code]["eliminations"]["reasons"] = reason_list(counter)

    # Tasks: opened and closed by their timestamps; overdue when the due date passed in
    # the quarter (and before today) without the task being closed by it.
    town_of_task = func.substr(col(Task.region_code), 1, 9)
    in_scope = scope.where(col(Task.region_code))
    for label, when in (("opened", col(Task.opened_at)), ("closed", col(Task.completed_at))):
        task_rows = await session.execute(
            select(col(Task.kind), town_of_task, func.count())
            .where(in_scope, when >= quarter.start_at, when < quarter.end_at)
            .group_by(col(Task.kind), town_of_task)
        )
        for kind, town_code, n in task_rows.all():
            if kind in TASK_KINDS:
                towns[town_code][TASK_KINDS[kind]][label] += n
    overdue_until = min(quarter.end, today)
    overdue_rows = await session.execute(
        select(
            col(Task.kind), col(Task.region_code), col(Task.due_on), col(Task.completed_at)
        ).where(in_scope, col(Task.due_on) >= quarter.start, col(Task.due_on) < overdue_until)
    )
    for kind, region_code, due_on, completed_at in overdue_rows.all():
        late = completed_at is None or completed_at.astimezone(domain.CHINA).date() > due_on
        if late and kind in TASK_KINDS:
            towns[domain.town_of(region_code)][TASK_KINDS[kind]]["overdue"] += 1

    # Contact compliance (每月至少走访或联系一次) over the months that have begun.
    months = months_due(quarter, today)
    due = {
        d.household_id: d
        for d in await households_due_contact(
            session, select(Household).where(scope.where(col(Household.region_code)))
        )
    }
    month = func.to_char(col(Visit.visited_on), "YYYY-MM")
    visit_rows = await session.execute(
        select(col(Visit.household_id), month, col(Visit.visitor))
        .where(
            scope.where(col(Visit.region_code)),
            col(Visit.visited_on) >= quarter.start,
            col(Visit.visited_on) < quarter.end,
        )
        .distinct()
    )
    contacted: dict[str, set[str]] = defaultdict(set)
    for household_id, visited_month, visitor in visit_rows.all():
        if household_id in due and domain.counts_as_contact(visitor, due[household_id]):
            contacted[household_id].add(visited_month)
    for household_id, household in due.items():
        contact = towns[household.town_code]["contact"]
        contact["due"] += 1
        seen = contacted.get(household_id, set())
        if all(m in seen for m in months):
            contact["compliant"] += 1
        for m in months:
            contact["by_month"][m] = contact["by_month"].get(m, 0) + (1 if m in seen else 0)

    # Grants paid, from the fund ledger (the grant side of each grant transaction).
    ledger = await session.execute(
        select(
            col(LedgerEntry.txn_id),
            col(LedgerEntry.amount),
            col(LedgerEntry.posted_on),
            col(LedgerEntry.posted_at),
            col(Grant.region_code),
        )
        .join(Grant, col(Grant.id) == col(LedgerEntry.txn_id))
        .where(
            col(LedgerEntry.kind) == "grant",
            col(LedgerEntry.account).startswith("grants:"),
            scope.where(col(Grant.region_code)),
            dated_window(quarter, closed, col(LedgerEntry.posted_on), col(LedgerEntry.posted_at)),
        )
    )
    paid: dict[str, Decimal] = defaultdict(Decimal)
    transactions: dict[str, set[str]] = defaultdict(set)
    for txn_id, amount, posted_on, posted_at, region_code in ledger.all():
        if not counts_here(quarter, posted_on, posted_at, closed):
            continue
        town_code = domain.town_of(region_code)
        paid[town_code] += amount
        transactions[town_code].add(txn_id)
    for town_code, amount in paid.items():
        towns[town_code]["grants"] = {
            "count": len(transactions[town_code]),
            "amount": str(domain.money(amount)),
        }

    sweep, quality = await data_quality.last_sweep(
        session, quarter=quarter, sees_town=scope.sees_town
    )
    compared = sweep is not None and sweep["previous_sweep_id"] is not None
    for town_code in quality:
        towns[town_code]  # a town with findings is in the report
    if scope.town:
        towns[scope.town]  # the asked-for town is always in the report, zeros or not
    entries = []
    for town_code in sorted(towns):
        town = towns[town_code]
        town["data_quality"] = quality_entry(quality.get(town_code, ()), compared=compared)
        town["contact"]["rate"] = rate(town["contact"]["compliant"], town["contact"]["due"])
        town["contact"]["by_month"] = {m: town["contact"]["by_month"].get(m, 0) for m in months}
        entries.append({"town_code": town_code, **town})
    return {
        "quarter": str(quarter),
        "start": quarter.start.isoformat(),
        "end": quarter.last_day.isoformat(),
        "status": "open",
        "complete": quarter.end <= today,  # the quarter is over
        "computed_at": utcnow().isoformat(),
        "closed_at": None,
        "closed_by": None,
        "late_data_rule": LATE_DATA_RULE,
        "data_quality": sweep,
        "towns": entries,
        "totals": county_totals(entries),
    }


def scoped(report: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
    """A stored (county-wide) report cut down to the towns the client may see."""
    towns = [t for t in report["towns"] if scope.sees_town(t["town_code"])]
    if scope.town and not towns:
        towns = [{"town_code": scope.town, **empty_town()}]
    return {**report, "towns": towns, "totals": county_totals(towns)}


# ----------------------------------------------------------------- commands


async def quarterly_report(
    session: AsyncSession, *, quarter: Quarter, scope: Scope
) -> dict[str, Any]:
    """The stored report of a closed quarter, or the live one of an open quarter."""
    stored = await session.get(QuarterlyReport, str(quarter))
    if stored is not None:
        return scoped(stored.report, scope)
    return await compute(
        session,
        quarter=quarter,
        scope=scope,
        closed=await closed_quarters(session),
        today=domain.today(),
    )


async def close_quarter(
    sessions: SessionFactory, *, quarter: Quarter, closed_by: str, principal: Principal
) -> dict[str, Any]:
    """Compute and store the county-wide report; a quarter is closed once (else 409)."""
    today = domain.today()
    if quarter.end > today:
        raise invalid(["path", "quarter"], "the quarter has not ended yet; it cannot be closed")
    already = Problem(409, f"quarter {quarter} is already closed")
    try:
        async with unit_of_work(sessions) as session:
            # One snapshot for every query of the report.
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            closed_at = utcnow()
            if await session.get(QuarterlyReport, str(quarter)) is not None:
                raise already
            everything = Principal(sub=principal.sub, scopes=principal.scopes, regions=("*",))
            report = await compute(
                session,
                quarter=quarter,
                scope=Scope(everything, None),
                closed=await closed_quarters(session),
                today=today,
            )
            report.update(
                status="closed", closed_at=closed_at.isoformat(), closed_by=closed_by, complete=True
            )
            stored = await session.scalar(
                insert(QuarterlyReport)
                .values(
                    quarter=str(quarter),
                    report=report,
                    closed_by=closed_by,
                    closed_client=principal.sub,
                    closed_at=closed_at,
                )
                .on_conflict_do_nothing(index_elements=["quarter"])
                .returning(col(QuarterlyReport.quarter))
            )
            if stored is None:
                raise already
            # The provincial return (returns.py) is frozen with the quarter, in this
            # transaction; that module builds on this one, hence the import here.
            from services.assistance.returns import freeze_return

            await freeze_return(
                session, quarter=quarter, closed_at=closed_at, closed_by=closed_by, today=today
            )
    except DBAPIError:
        # Two closes at once: under REPEATABLE READ the later one fails to serialize.
        async with sessions() as session:
            if await session.get(QuarterlyReport, str(quarter)) is not None:
                raise already from None
        raise
    return report


# ------------------------------------------------------------------- risk levels


async def apply_assessment(session: AsyncSession, event: CloudEvent) -> None:
    """risk.assessments → the household's current risk level (older assessments ignored)."""
    payload = event.payload()
    assert isinstance(payload, AssessmentChanged)
    stmt = insert(RiskLevel).values(
        household_id=payload.household_id,
        region_code=payload.region_code,
        level=payload.level,
        score=payload.score,
        assessed_at=payload.assessed_at,
    )
    excluded = stmt.excluded
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["household_id"],
            set_={
                "region_code": excluded.region_code,
                "level": excluded.level,
                "score": excluded.score,
                "assessed_at": excluded.assessed_at,
            },
            where=col(RiskLevel.assessed_at) < excluded.assessed_at,
        )
    )


# ------------------------------------------------------------------------ routes


def parse_quarter(text: str, today: date) -> Quarter:
    try:
        quarter = Quarter.parse(text)
    except ValueError as exc:
        raise invalid(["path", "quarter"], str(exc)) from None
    if quarter.start > today:
        raise invalid(["path", "quarter"], "the quarter is in the future")
    return quarter


def town_scope(principal: Principal, town: str | None) -> Scope:
    if town and not (principal.can_see(town) or any(p.startswith(town) for p in principal.regions)):
        raise Problem(403, f"town {town} is outside this client's regions")
    return Scope(principal, town)


@router.get(
    "/reports/quarterly/{quarter}",
    responses={200: {"content": {XLSX: {}}, "description": "JSON, or XLSX for `.xlsx`"}},
)
async def get_quarterly_report(
    quarter: str,
    session: SessionDep,
    town: Annotated[str | None, Query(pattern=r"^\d{9}$", description="9-digit town code")] = None,
    format: Annotated[Literal["json", "xlsx"] | None, Query()] = None,
    principal: Principal = READ,
) -> Any:
    """季度动态监测 by town plus county totals (`2026Q4`; `2026Q4.xlsx` or `?format=xlsx`
    for the county office's workbook). A closed quarter returns its stored report."""
    if quarter.endswith(".xlsx"):
        quarter, format = quarter.removesuffix(".xlsx"), "xlsx"
    report = await quarterly_report(
        session, quarter=parse_quarter(quarter, domain.today()), scope=town_scope(principal, town)
    )
    if format != "xlsx":
        return report
    data = await asyncio.to_thread(workbook_bytes, report)
    quarter = report["quarter"]
    return xlsx_response(data, name=f"季度动态监测_{quarter}", ascii_name=f"quarterly-{quarter}")


class QuarterClose(Strict):
    closed_by: str | None = Field(default=None, min_length=1, max_length=100)


class ClosedReport(BaseModel):
    quarter: str
    closed_by: str
    closed_at: str
    report: dict[str, Any]


@router.post("/reports/quarterly/{quarter}/close", status_code=201)
async def post_close(
    quarter: str,
    sessions: SessionsDep,
    body: Annotated[QuarterClose | None, Body()] = None,
    principal: Principal = WRITE,
) -> ClosedReport:
    """Close an ended quarter (county office only): its report is stored and never changes;
    data recorded later for it counts in the next open quarter. Closing twice is a 409."""
    principal.require_level(Level.COUNTY, "closing a quarter")
    closed_by = (body.closed_by if body else None) or principal.sub
    report = await close_quarter(
        sessions,
        quarter=parse_quarter(quarter, domain.today()),
        closed_by=closed_by,
        principal=principal,
    )
    return ClosedReport(
        quarter=report["quarter"],
        closed_by=closed_by,
        closed_at=report["closed_at"],
        report=report,
    )
