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
- contact compliance: monitored and marginal households contacted (visit, phone, SMS,
  WeChat) at least once in every month of the quarter that has begun;
- grants paid: count and amount of the grant transactions in the fund ledger.

Closing (`POST .../close`, county office only) stores the report as computed; a closed
quarter is read back from the store and never changes.

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
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Query
from fastapi.responses import StreamingResponse
from openpyxl import Workbook
from openpyxl.styles import Font
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
from backstop.exports import safe_row
from services.assistance import domain
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

router = APIRouter(prefix="/v1", tags=["reports"])
READ = require("assistance:read")
WRITE = require("assistance:write")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

HOUSEHOLD_TYPES = ("alleviated", "unstable", "marginal", "sudden_hardship", "ordinary")
MONITORING_STATUSES = ("none", "monitored", "eliminated")
RISK_LEVELS = ("none", "watch", "at_risk", "unassessed")
MONITORING_TYPES = ("unstable", "marginal", "sudden_hardship")
ELIMINATION_METHODS = ("assisted", "natural")  # 帮扶消除 / 自然消除
LATE_DATA_RULE = (
    "A dated fact counts in its own quarter unless that quarter was already closed when "
    "the fact was recorded; then it counts in the first later quarter still open at that "
    "moment. Household counts are the state when the report was computed."
)

# ------------------------------------------------------------------------ quarters

_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int  # 1..4

    @classmethod
    def parse(cls, text: str) -> Quarter:
        """'2026Q4' → Quarter(2026, 4); ValueError for anything else."""
        match = _QUARTER.fullmatch(text)
        if match is None or not 2000 <= int(match.group(1)) <= 2100:
            raise ValueError("a quarter like 2026Q4")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> Quarter:
        return cls(day.year, (day.month - 1) // 3 + 1)

    @classmethod
    def at(cls, moment: datetime) -> Quarter:
        """The quarter of a moment on the county's (Asia/Shanghai) calendar."""
        return cls.of(moment.astimezone(domain.CHINA).date())

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def start(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """The first day after the quarter."""
        return self.next().start

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.end.toordinal() - 1)

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(), domain.CHINA)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time(), domain.CHINA)

    def months(self) -> list[str]:
        return [f"{self.year}-{m:02d}" for m in range(3 * self.number - 2, 3 * self.number + 1)]

    def next(self) -> Quarter:
        return (
            Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)
        )

    def previous(self) -> Quarter:
        return (
            Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)
        )


def reporting_quarter(
    own: Quarter, recorded_at: datetime, closed: Mapping[Quarter, datetime]
) -> Quarter:
    """The late-data rule: the fact's own quarter, or — when that quarter had been closed
    before the fact was recorded — the first later quarter still open at that moment."""
    quarter = own
    while quarter in closed and closed[quarter] <= recorded_at:
        quarter = quarter.next()
    return quarter


def months_due(quarter: Quarter, today: date) -> list[str]:
    """The quarter's months that have begun by `today` (contact is due in each)."""
    return [m for m in quarter.months() if date.fromisoformat(m + "-01") <= today]


# --------------------------------------------------------------- the report shape


# Task kinds counted, and their key in a town's entry.
TASK_KINDS = {"verification": "verification_tasks", "review": "review_tasks"}


def empty_town() -> dict[str, Any]:
    return {
        "households": {
            "total": 0,
            "by_type": dict.fromkeys(HOUSEHOLD_TYPES, 0),
            "by_monitoring_status": dict.fromkeys(MONITORING_STATUSES, 0),
            "by_risk_level": dict.fromkeys(RISK_LEVELS, 0),
        },
        "inclusions": {
            "total": 0,
            "by_monitoring_type": dict.fromkeys(MONITORING_TYPES, 0),
            "by_factor": {},
        },
        "eliminations": {
            "total": 0,
            "by_method": dict.fromkeys(ELIMINATION_METHODS, 0),
            "reasons": [],
        },
        **{key: {"opened": 0, "closed": 0, "overdue": 0} for key in TASK_KINDS.values()},
        "contact": {"due": 0, "compliant": 0, "rate": None, "by_month": {}},
        "grants": {"count": 0, "amount": "0.00"},
    }


def _rate(compliant: int, due: int) -> float | None:
    return round(compliant / due, 4) if due else None


def county_totals(towns: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The county's row: the sum of its towns' rows (the rate recomputed from the sums)."""
    total = empty_town()
    reasons: Counter[tuple[str, str]] = Counter()
    amount = Decimal("0.00")
    for town in towns:
        for key in ("by_type", "by_monitoring_status", "by_risk_level"):
            _add(total["households"][key], town["households"][key])
        total["households"]["total"] += town["households"]["total"]
        total["inclusions"]["total"] += town["inclusions"]["total"]
        _add(total["inclusions"]["by_monitoring_type"], town["inclusions"]["by_monitoring_type"])
        _add(total["inclusions"]["by_factor"], town["inclusions"]["by_factor"])
        total["eliminations"]["total"] += town["eliminations"]["total"]
        _add(total["eliminations"]["by_method"], town["eliminations"]["by_method"])
        for r in town["eliminations"]["reasons"]:
            reasons[(r["method"], r["reason"])] += r["count"]
        for key in TASK_KINDS.values():
            _add(total[key], town.get(key, {}))  # reports closed before review tasks lack it
        for key in ("due", "compliant"):
            total["contact"][key] += town["contact"][key]
        _add(total["contact"]["by_month"], town["contact"]["by_month"])
        total["grants"]["count"] += town["grants"]["count"]
        amount += Decimal(town["grants"]["amount"])
    total["eliminations"]["reasons"] = _reason_list(reasons)
    total["contact"]["rate"] = _rate(total["contact"]["compliant"], total["contact"]["due"])
    total["grants"]["amount"] = str(domain.money(amount))
    return total


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def _reason_list(reasons: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"method": method, "reason": reason, "count": n}
        for (method, reason), n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


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


async def closed_quarters(session: AsyncSession) -> dict[Quarter, datetime]:
    rows = await session.execute(
        select(col(QuarterlyReport.quarter), col(QuarterlyReport.closed_at))
    )
    return {Quarter.parse(q): at for q, at in rows.all()}


def _dated_window(
    quarter: Quarter, closed: Mapping[Quarter, datetime], own: Any, recorded: Any
) -> Any:
    """Facts dated in the quarter, plus the earlier ones recorded after the previous
    quarter was closed (candidates for arriving late into this one)."""
    in_quarter = and_(own >= quarter.start, own < quarter.end)
    previous_closed = closed.get(quarter.previous())
    if previous_closed is None:
        return in_quarter
    return or_(in_quarter, and_(own < quarter.start, recorded > previous_closed))


def _counts_here(
    quarter: Quarter, own: date, recorded_at: datetime, closed: Mapping[Quarter, datetime]
) -> bool:
    return reporting_quarter(Quarter.of(own), recorded_at, closed) == quarter


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
    approved_at = (
        select(col(CaseStep.case_id), func.max(col(CaseStep.recorded_at)).label("recorded_at"))
        .where(col(CaseStep.step) == "county_approval", col(CaseStep.passed))
        .group_by(col(CaseStep.case_id))
        .subquery()
    )
    decided_on = col(Case.decided_on)
    cases = await session.execute(
        select(Case, approved_at.c.recorded_at)
        .join(approved_at, approved_at.c.case_id == col(Case.id))
        .where(
            col(Case.status) == "approved",
            scope.where(col(Case.region_code)),
            _dated_window(quarter, closed, decided_on, approved_at.c.recorded_at),
        )
    )
    reasons: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for case, recorded_at in cases.all():
        assert case.decided_on is not None
        if not _counts_here(quarter, case.decided_on, recorded_at, closed):
            continue
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
        towns[town_code]["eliminations"]["reasons"] = _reason_list(counter)

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
    due_rows = await session.execute(
        select(col(Household.household_id), col(Household.town_code)).where(
            scope.where(col(Household.region_code)),
            or_(col(Household.monitoring_status) == "monitored", col(Household.type) == "marginal"),
        )
    )
    due = dict(due_rows.all())
    month = func.to_char(col(Visit.visited_on), "YYYY-MM")
    visit_rows = await session.execute(
        select(col(Visit.household_id), month)
        .where(
            scope.where(col(Visit.region_code)),
            col(Visit.visited_on) >= quarter.start,
            col(Visit.visited_on) < quarter.end,
        )
        .distinct()
    )
    contacted: dict[str, set[str]] = defaultdict(set)
    for household_id, visited_month in visit_rows.all():
        if household_id in due:
            contacted[household_id].add(visited_month)
    for household_id, town_code in due.items():
        contact = towns[town_code]["contact"]
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
            _dated_window(quarter, closed, col(LedgerEntry.posted_on), col(LedgerEntry.posted_at)),
        )
    )
    paid: dict[str, Decimal] = defaultdict(Decimal)
    transactions: dict[str, set[str]] = defaultdict(set)
    for txn_id, amount, posted_on, posted_at, region_code in ledger.all():
        if not _counts_here(quarter, posted_on, posted_at, closed):
            continue
        town_code = domain.town_of(region_code)
        paid[town_code] += amount
        transactions[town_code].add(txn_id)
    for town_code, amount in paid.items():
        towns[town_code]["grants"] = {
            "count": len(transactions[town_code]),
            "amount": str(domain.money(amount)),
        }

    if scope.town:
        towns[scope.town]  # the asked-for town is always in the report, zeros or not
    entries = []
    for town_code in sorted(towns):
        town = towns[town_code]
        town["contact"]["rate"] = _rate(town["contact"]["compliant"], town["contact"]["due"])
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


# ------------------------------------------------------------------------- XLSX

TYPE_LABELS = {
    "alleviated": "脱贫户",
    "unstable": "脱贫不稳定户",
    "marginal": "边缘易致贫户",
    "sudden_hardship": "突发严重困难户",
    "ordinary": "一般农户",
}
STATUS_LABELS = {"none": "未纳入监测", "monitored": "监测中", "eliminated": "已消除风险"}
LEVEL_LABELS = {
    "none": "无风险",
    "watch": "可能存在问题尚无致贫返贫风险",
    "at_risk": "存在突出问题有返贫致贫风险",
    "unassessed": "未评估",
}
METHOD_LABELS = {"assisted": "帮扶消除", "natural": "自然消除"}

# (Chinese header, path into a town's entry)
COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("农户总数", ("households", "total")),
    *[(f"户类型：{v}", ("households", "by_type", k)) for k, v in TYPE_LABELS.items()],
    *[(f"监测状态：{v}", ("households", "by_monitoring_status", k)) for k, v in STATUS_LABELS.items()],
    *[(f"风险等级：{v}", ("households", "by_risk_level", k)) for k, v in LEVEL_LABELS.items()],
    ("本季度新纳入监测户", ("inclusions", "total")),
    *[(f"其中{TYPE_LABELS[k]}", ("inclusions", "by_monitoring_type", k)) for k in MONITORING_TYPES],
    ("本季度风险消除户", ("eliminations", "total")),
    *[(f"其中{v}", ("eliminations", "by_method", k)) for k, v in METHOD_LABELS.items()],
    ("核实任务新增", ("verification_tasks", "opened")),
    ("核实任务办结", ("verification_tasks", "closed")),
    ("核实任务逾期", ("verification_tasks", "overdue")),
    ("回头看任务新增", ("review_tasks", "opened")),
    ("回头看任务办结", ("review_tasks", "closed")),
    ("回头看任务逾期", ("review_tasks", "overdue")),
    ("应联系户数", ("contact", "due")),
    ("每月联系达标户数", ("contact", "compliant")),
    ("联系达标率", ("contact", "rate")),
    ("救助发放笔数", ("grants", "count")),
    ("救助发放金额（元）", ("grants", "amount")),
]  # fmt: skip


def cell_value(entry: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = entry
    for key in path:
        value = value.get(key, 0) if isinstance(value, Mapping) else 0
    if path == ("grants", "amount"):
        return float(Decimal(value))
    return value


HEADERS = ["乡镇代码", *[name for name, _ in COLUMNS]]
REASON_HEADERS = ["乡镇代码", "类别", "原因", "户数"]


def workbook_bytes(report: Mapping[str, Any]) -> bytes:
    """The report as an XLSX workbook: one row per town and the county total (全县合计),
    the reasons for inclusion and elimination, and a sheet describing the report."""
    wb = Workbook()
    sheet = wb.active
    assert sheet is not None
    sheet.title = "季度动态监测"
    sheet.append(safe_row(HEADERS))
    for town in report["towns"]:
        sheet.append(
            safe_row([town["town_code"], *[cell_value(town, path) for _, path in COLUMNS]])
        )
    sheet.append(
        safe_row(["全县合计", *[cell_value(report["totals"], path) for _, path in COLUMNS]])
    )
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "B2"

    reasons = wb.create_sheet("纳入与消除原因")
    reasons.append(safe_row(REASON_HEADERS))
    for town in report["towns"]:
        for factor, n in sorted(town["inclusions"]["by_factor"].items()):
            label = domain.FACTOR_LABELS.get(factor, factor)
            reasons.append(safe_row([town["town_code"], "新纳入监测", label, n]))
        for r in town["eliminations"]["reasons"]:
            method = METHOD_LABELS.get(r["method"], r["method"])
            reasons.append(safe_row([town["town_code"], method, r["reason"], r["count"]]))
    for cell in reasons[1]:
        cell.font = Font(bold=True)

    about = wb.create_sheet("说明")
    for row in (
        ("季度", report["quarter"]),
        ("统计期间", f"{report['start']} 至 {report['end']}"),
        ("状态", "已关账" if report["status"] == "closed" else "未关账（数据可能变化）"),
        ("统计时间", report["computed_at"]),
        ("关账人", report.get("closed_by") or ""),
        ("关账时间", report.get("closed_at") or ""),
        (
            "迟报数据规则",
            "关账后补录的数据（按其日期属于已关账季度）计入补录时仍未关账的下一季度；"
            "农户数按统计时的状态计算。",
        ),
    ):
        about.append(safe_row(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


# ------------------------------------------------------------------------ routes


def _quarter(text: str, today: date) -> Quarter:
    try:
        quarter = Quarter.parse(text)
    except ValueError as exc:
        raise invalid(["path", "quarter"], str(exc)) from None
    if quarter.start > today:
        raise invalid(["path", "quarter"], "the quarter is in the future")
    return quarter


def _scope(principal: Principal, town: str | None) -> Scope:
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
        session, quarter=_quarter(quarter, domain.today()), scope=_scope(principal, town)
    )
    if format != "xlsx":
        return report
    data = await asyncio.to_thread(workbook_bytes, report)
    name = f"季度动态监测_{report['quarter']}.xlsx"
    return StreamingResponse(
        _chunks(data),
        media_type=XLSX,
        headers={
            "Content-Disposition": f'attachment; filename="quarterly-{report["quarter"]}.xlsx"; '
            f"filename*=UTF-8''{quote(name)}",
            "Content-Length": str(len(data)),
        },
    )


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
        quarter=_quarter(quarter, domain.today()),
        closed_by=closed_by,
        principal=principal,
    )
    return ClosedReport(
        quarter=report["quarter"],
        closed_by=closed_by,
        closed_at=report["closed_at"],
        report=report,
    )
