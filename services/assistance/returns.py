"""The quarterly return to the provincial monitoring system (季度动态监测): what the county
records there each quarter, household by household — households entering monitoring and
those whose risk was eliminated, changes of the guarantee items (一达标两不愁三保障, 饮水
安全), income updates, measures applied, and the roll of monitored households — served as
JSON and as the county office's XLSX, with the differences from the previous quarter.

Where the facts come from, all assistance's own or heard through events:
- entries and eliminations: the procedure's approved decisions (县级确认), as the quarterly
  report (`reports.approved_cases`) counts them;
- guarantee and income changes: registry's household events carry the full snapshot, so
  `record_changes` compares each newer snapshot with the read model's before it moves on
  and keeps what changed (`household_changes`), stamped with the moment assistance heard it;
- measures: the assistance plans' measures, dated by their start.

Closing the quarter (`POST /v1/reports/quarterly/{quarter}/close`, county level) freezes
the return with the report, in the same transaction (`freeze_return`); a closed quarter's
return is read back as stored and never changes. Dated facts follow the report's late-data
rule: a fact dated in a quarter closed before assistance recorded it counts in the next
open quarter. The roll (`monitored`) is the state when the return is computed."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Column, DateTime, Index, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field as SQLField
from sqlmodel import col

from backstop.app import SessionDep
from backstop.auth import Principal, require
from backstop.contracts.registry import HouseholdEvent
from backstop.db import one_of
from backstop.events import CloudEvent
from backstop.exports import XLSX, xlsx_response
from services.assistance import domain, province_return
from services.assistance.models import (
    AssistanceBase,
    Case,
    Household,
    Measure,
    Plan,
    QuarterlyReport,
    utcnow,
)
from services.assistance.province_return_xlsx import workbook_bytes
from services.assistance.quarterly import Quarter
from services.assistance.reports import (
    Scope,
    approved_cases,
    closed_quarters,
    counts_here,
    dated_window,
    parse_quarter,
    town_scope,
)

router = APIRouter(prefix="/v1/province", tags=["province"])
READ = require("province:read")


class HouseholdChange(AssistanceBase, table=True):
    """A guarantee item's status or a year's income that changed between two snapshots of
    registry's household (append-only; one row per item per event)."""

    __tablename__ = "household_changes"
    __table_args__ = (Index("ix_household_changes_changed_on", "changed_on"),)

    id: int | None = SQLField(default=None, primary_key=True)
    household_id: str = SQLField(max_length=36, index=True)
    region_code: str = SQLField(max_length=12, index=True)
    kind: str = SQLField(max_length=10)  # guarantee | income
    item: str = SQLField(max_length=30)  # the guarantee item, or the income's year
    before: Any = SQLField(default=None, sa_column=Column(JSONB, nullable=True))
    after: Any = SQLField(default=None, sa_column=Column(JSONB, nullable=True))
    per_capita: float | None = None
    changed_on: date
    # When assistance heard it (its own clock, as the close's): the late-data rule's moment.
    recorded_at: datetime = SQLField(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    event_id: str = SQLField(max_length=64)


class ProvinceReturn(AssistanceBase, table=True):
    """A closed quarter's return, stored when the quarter was closed and never changed."""

    __tablename__ = "province_returns"

    quarter: str = SQLField(primary_key=True, max_length=6, foreign_key="quarterly_reports.quarter")
    body: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSONB, nullable=False))


# ---------------------------------------------------------- changes from registry


async def record_changes(session: AsyncSession, event: CloudEvent) -> None:
    """Keep the guarantee and income changes a newer household snapshot brings against the
    read model's (run before `common.apply_household` moves the read model on; a stale or
    first snapshot records nothing)."""
    payload = event.payload()
    assert isinstance(payload, HouseholdEvent)
    after = payload.household
    parts = ("guarantees", "guarantees_verified_on", "incomes")  # not the members
    stored = (
        await session.execute(
            select(col(Household.version), *(Household.snapshot[p] for p in parts))
            .where(col(Household.household_id) == after.household_id)
            .with_for_update()
        )
    ).one_or_none()
    if stored is None or after.version <= stored[0]:
        return
    registry_day = event.time.astimezone(domain.CHINA).date()  # the day registry recorded it
    changes = province_return.snapshot_changes(
        dict(zip(parts, stored[1:], strict=True)),
        after.model_dump(mode="json", include=set(parts)),
        on=registry_day,
    )
    session.add_all(
        HouseholdChange(
            household_id=after.household_id,
            region_code=after.region_code,
            kind=c["kind"],
            item=c["item"],
            before=c["before"],
            after=c["after"],
            per_capita=c.get("per_capita"),
            changed_on=c["on"],
            event_id=event.id,
        )
        for c in changes
    )


# ------------------------------------------------------------------- computing


async def compute(
    session: AsyncSession,
    *,
    quarter: Quarter,
    scope: Scope,
    closed: Mapping[Quarter, datetime],
    today: date,
) -> dict[str, Any]:
    """The return of an open quarter as the data stands now."""
    sections: dict[str, list[dict[str, Any]]] = {s: [] for s in province_return.SECTIONS}
    for case in await approved_cases(session, quarter=quarter, scope=scope, closed=closed):
        row: dict[str, Any] = {
            "case_id": case.id,
            "household_id": case.household_id,
            "region_code": case.region_code,
            "town_code": domain.town_of(case.region_code),
            "decided_on": case.decided_on.isoformat() if case.decided_on else None,
        }
        if case.kind == "identification":
            row |= {
                "monitoring_type": case.monitoring_type or "unstable",
                "risk_factors": list(case.risk_factors),
            }
            sections["entered"].append(row)
        elif case.kind == "elimination":
            row |= {"method": case.elimination_method or "natural", "reason": case.reason or ""}
            sections["eliminated"].append(row)

    change_rows = await session.execute(
        select(HouseholdChange)
        .where(
            scope.where(col(HouseholdChange.region_code)),
            dated_window(
                quarter, closed, col(HouseholdChange.changed_on), col(HouseholdChange.recorded_at)
            ),
        )
        .order_by(col(HouseholdChange.recorded_at), col(HouseholdChange.id))
    )
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for change in change_rows.scalars():
        if counts_here(quarter, change.changed_on, change.recorded_at, closed):
            by_kind[change.kind].append(
                {
                    "household_id": change.household_id,
                    "region_code": change.region_code,
                    "town_code": domain.town_of(change.region_code),
                    "item": change.item,
                    "before": change.before,
                    "after": change.after,
                    "per_capita": change.per_capita,
                    "changed_on": change.changed_on.isoformat(),
                }
            )
    for row in province_return.net_changes(by_kind["guarantee"], ("household_id", "item")):
        del row["per_capita"]
        row["direction"] = province_return.direction(row["before"], row["after"])
        sections["guarantee_changes"].append(row)
    for income in province_return.net_changes(by_kind["income"], ("household_id", "item")):
        year = int(income.pop("item"))
        sections["income_updates"].append({**income, "year": year})

    measure_rows = await session.execute(
        select(Measure, col(Plan.region_code), col(Plan.created_at))
        .join(Plan, col(Plan.id) == col(Measure.plan_id))
        .where(
            scope.where(col(Plan.region_code)),
            dated_window(quarter, closed, col(Measure.start_on), col(Plan.created_at)),
        )
    )
    for measure, region_code, created_at in measure_rows.all():
        if counts_here(quarter, measure.start_on, created_at, closed):
            sections["measures"].append(
                {
                    "measure_id": measure.id,
                    "household_id": measure.household_id,
                    "region_code": region_code,
                    "town_code": domain.town_of(region_code),
                    "category": measure.category,
                    "description": measure.description,
                    "start_on": measure.start_on.isoformat(),
                    "end_on": measure.end_on.isoformat(),
                    "amount": str(domain.money(measure.amount)),
                    "responsible_unit": measure.responsible_unit,
                }
            )

    sections["monitored"] = await _monitored(session, quarter=quarter, scope=scope)
    await _add_household_numbers(session, sections)
    sections = {s: province_return.sort_rows(s, rows) for s, rows in sections.items()}
    return {
        "quarter": str(quarter),
        "start": quarter.start.isoformat(),
        "end": quarter.last_day.isoformat(),
        "status": "open",
        "complete": quarter.end <= today,
        "computed_at": utcnow().isoformat(),
        "closed_at": None,
        "closed_by": None,
        "counts": province_return.counts(sections),
        "sections": sections,
    }


async def _monitored(
    session: AsyncSession, *, quarter: Quarter, scope: Scope
) -> list[dict[str, Any]]:
    """The households under monitoring now: their risk factors (of the latest approved
    identification), open guarantee issues, newest income and measures in force in the
    quarter."""
    monitored = (
        scope.where(col(Household.region_code)),
        col(Household.monitoring_status) == "monitored",
    )
    households = list((await session.execute(select(Household).where(*monitored))).scalars())
    latest = await session.execute(
        select(col(Case.household_id), col(Case.risk_factors))
        .join(Household, col(Household.household_id) == col(Case.household_id))
        .where(*monitored, col(Case.kind) == "identification", col(Case.status) == "approved")
        .order_by(col(Case.household_id), col(Case.decided_on).desc(), col(Case.id).desc())
        .distinct(col(Case.household_id))
    )
    factors: dict[str, list[str]] = {h: list(f) for h, f in latest.all()}
    measures = await session.execute(
        select(col(Measure.household_id), func.count())
        .join(Household, col(Household.household_id) == col(Measure.household_id))
        .where(
            *monitored, col(Measure.start_on) < quarter.end, col(Measure.end_on) >= quarter.start
        )
        .group_by(col(Measure.household_id))
    )
    in_force: dict[str, int] = {h: n for h, n in measures.all()}
    rows = []
    for h in households:
        snap = h.snapshot
        incomes = snap.get("incomes") or []
        newest = max(incomes, key=lambda i: int(i["year"])) if incomes else None
        rows.append(
            {
                "household_id": h.household_id,
                "region_code": h.region_code,
                "town_code": h.town_code,
                "type": h.type,
                "monitoring_since": h.monitoring_since.isoformat() if h.monitoring_since else None,
                "risk_factors": factors.get(h.household_id, []),
                "guarantee_issues": {
                    k: v for k, v in sorted((snap.get("guarantees") or {}).items()) if v != "ok"
                },
                "income_year": int(newest["year"]) if newest else None,
                "per_capita": float(newest["per_capita"]) if newest else None,
                "measures_in_force": in_force.get(h.household_id, 0),
            }
        )
    return rows


async def _add_household_numbers(
    session: AsyncSession, sections: Mapping[str, list[dict[str, Any]]]
) -> None:
    """Each row's 户编号 (registry's household number), by which the county finds the
    household in the national system."""
    ids = sorted({r["household_id"] for rows in sections.values() for r in rows})
    result = await session.execute(
        select(col(Household.household_id), Household.snapshot["household_number"].astext).where(
            one_of(col(Household.household_id), ids)
        )
    )
    numbers: dict[str, str | None] = {household_id: number for household_id, number in result.all()}
    for rows in sections.values():
        for row in rows:
            row["household_number"] = numbers.get(row["household_id"])


async def freeze_return(
    session: AsyncSession, *, quarter: Quarter, closed_at: datetime, closed_by: str, today: date
) -> None:
    """Store the county-wide return of a quarter being closed (in the close's transaction,
    after its report row, which it references)."""
    everything = Principal(sub="close", scopes=frozenset(), regions=("*",))
    body = await compute(
        session,
        quarter=quarter,
        scope=Scope(everything, None),
        closed=await closed_quarters(session),
        today=today,
    )
    body.update(
        status="closed", complete=True, closed_at=closed_at.isoformat(), closed_by=closed_by
    )
    session.add(ProvinceReturn(quarter=str(quarter), body=body))


async def quarterly_return(
    session: AsyncSession, *, quarter: Quarter, scope: Scope
) -> dict[str, Any]:
    """A closed quarter's stored return (cut to the caller's regions), or the live one."""
    stored = await session.get(ProvinceReturn, str(quarter))
    if stored is not None:
        return province_return.cut(stored.body, scope.sees_region)
    closed = await closed_quarters(session)
    live = await compute(session, quarter=quarter, scope=scope, closed=closed, today=domain.today())
    report = await session.get(QuarterlyReport, str(quarter)) if quarter in closed else None
    if report is not None:
        # Closed before returns were kept: facts recorded after the close already count in
        # a later quarter (the late-data rule), so only the roll is as of now.
        live.update(
            status="closed", closed_at=report.closed_at.isoformat(), closed_by=report.closed_by
        )
    return live


# ------------------------------------------------------------------------ routes


class _Row(BaseModel):
    household_id: str
    household_number: str | None  # 户编号
    region_code: str
    town_code: str


class EnteredRow(_Row):
    case_id: str
    monitoring_type: Literal["unstable", "marginal", "sudden_hardship"]
    risk_factors: list[str]  # 风险类型: risk's factor codes
    decided_on: date  # 县级确认


class EliminatedRow(_Row):
    case_id: str
    method: Literal["assisted", "natural"]  # 帮扶消除 / 自然消除
    reason: str
    decided_on: date


class GuaranteeChangeRow(_Row):
    item: str  # food, clothing, compulsory_education, basic_medical, housing, drinking_water
    before: str | None  # None: not verified before
    after: str | None
    direction: Literal["worse", "better", "unchanged"]
    changed_on: date


class IncomeUpdateRow(_Row):
    year: int
    before: float | None  # the year's household net income before (None: new year)
    after: float
    per_capita: float | None
    changed_on: date


class MeasureRow(_Row):
    measure_id: str
    category: str
    description: str
    start_on: date
    end_on: date
    amount: str  # yuan, exact
    responsible_unit: str


class MonitoredRow(_Row):
    type: str
    monitoring_since: date | None
    risk_factors: list[str]
    guarantee_issues: dict[str, str]  # items not `ok`
    income_year: int | None
    per_capita: float | None
    measures_in_force: int


class ReturnSections(BaseModel):
    entered: list[EnteredRow]
    eliminated: list[EliminatedRow]
    guarantee_changes: list[GuaranteeChangeRow]
    income_updates: list[IncomeUpdateRow]
    measures: list[MeasureRow]
    monitored: list[MonitoredRow]


class ReturnCounts(BaseModel):
    entered: int
    eliminated: int
    guarantee_changes: int
    income_updates: int
    measures: int
    monitored: int
    households: int  # distinct households in the quarter's event sections
    entered_by_monitoring_type: dict[str, int]
    entered_by_factor: dict[str, int]
    eliminated_by_method: dict[str, int]
    guarantee_changes_by_item: dict[str, int]
    guarantee_changes_by_direction: dict[str, int]
    measures_by_category: dict[str, int]
    by_town: dict[str, dict[str, int]]


_HOUSEHOLD = {
    "household_id": "0b7c2f4e-6a51-4d0e-9a43-2c7d1e8f5a10",
    "household_number": "4418810010010001",
    "region_code": "441881101001",
    "town_code": "441881101",
}
_EXAMPLE_RETURN: dict[str, Any] = {
    "quarter": "2026Q4",
    "start": "2026-10-01",
    "end": "2026-12-31",
    "status": "closed",
    "complete": True,
    "computed_at": "2027-01-05T02:00:00+00:00",
    "closed_at": "2027-01-05T02:00:00+00:00",
    "closed_by": "县扶贫办张三",
    "counts": {
        "entered": 1,
        "eliminated": 0,
        "guarantee_changes": 1,
        "income_updates": 1,
        "measures": 1,
        "monitored": 1,
        "households": 1,
        "entered_by_monitoring_type": {"marginal": 1},
        "entered_by_factor": {"illness": 1},
        "eliminated_by_method": {},
        "guarantee_changes_by_item": {"housing": 1},
        "guarantee_changes_by_direction": {"worse": 1},
        "measures_by_category": {"health": 1},
        "by_town": {
            "441881101": {
                "entered": 1,
                "eliminated": 0,
                "guarantee_changes": 1,
                "income_updates": 1,
                "measures": 1,
                "monitored": 1,
            }
        },
    },
    "sections": {
        "entered": [
            {
                **_HOUSEHOLD,
                "case_id": "5f1e0c3a-2b7d-4c61-8e90-1a2b3c4d5e6f",
                "monitoring_type": "marginal",
                "risk_factors": ["illness"],
                "decided_on": "2026-11-20",
            }
        ],
        "eliminated": [],
        "guarantee_changes": [
            {
                **_HOUSEHOLD,
                "item": "housing",
                "before": "ok",
                "after": "prominent_issue",
                "direction": "worse",
                "changed_on": "2026-11-12",
            }
        ],
        "income_updates": [
            {
                **_HOUSEHOLD,
                "year": 2026,
                "before": None,
                "after": 14200.0,
                "per_capita": 4733.33,
                "changed_on": "2026-12-20",
            }
        ],
        "measures": [
            {
                **_HOUSEHOLD,
                "measure_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "category": "health",
                "description": "大病医疗救助",
                "start_on": "2026-12-01",
                "end_on": "2027-11-30",
                "amount": "3000.00",
                "responsible_unit": "镇卫生院",
            }
        ],
        "monitored": [
            {
                **_HOUSEHOLD,
                "type": "marginal",
                "monitoring_since": "2026-11-20",
                "risk_factors": ["illness"],
                "guarantee_issues": {"housing": "prominent_issue"},
                "income_year": 2026,
                "per_capita": 4733.33,
                "measures_in_force": 1,
            }
        ],
    },
}


class ProvinceReturnPublic(BaseModel):
    """季度动态监测: what the county records in the monitoring system for a quarter."""

    quarter: str
    start: date
    end: date
    status: Literal["open", "closed"]
    complete: bool  # the quarter is over
    computed_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    counts: ReturnCounts
    sections: ReturnSections

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_RETURN]})


class CountChange(BaseModel):
    previous: int
    current: int
    change: int


class SectionDiff(BaseModel):
    added: list[dict[str, Any]]  # rows only in this quarter's return
    removed: list[dict[str, Any]]  # rows only in the previous quarter's
    changed: list[dict[str, Any]]  # the row's key and `fields`: {name: {before, after}}


class ReturnDiff(BaseModel):
    """This quarter's return against the previous quarter's, row by row."""

    quarter: str
    previous_quarter: str
    status: Literal["open", "closed"]
    previous_status: Literal["open", "closed"]
    counts: dict[str, CountChange]
    sections: dict[str, SectionDiff]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "quarter": "2026Q4",
                    "previous_quarter": "2026Q3",
                    "status": "open",
                    "previous_status": "closed",
                    "counts": {
                        "monitored": {"previous": 12, "current": 13, "change": 1},
                        "entered": {"previous": 2, "current": 1, "change": -1},
                    },
                    "sections": {
                        "monitored": {
                            "added": [_EXAMPLE_RETURN["sections"]["monitored"][0]],
                            "removed": [],
                            "changed": [
                                {
                                    "household_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
                                    "household_number": "4418810010010002",
                                    "fields": {
                                        "measures_in_force": {"before": 0, "after": 2},
                                        "per_capita": {"before": 5100.0, "after": 6900.0},
                                    },
                                }
                            ],
                        }
                    },
                }
            ]
        }
    )


async def _return_and_diff(
    session: AsyncSession, *, quarter: Quarter, scope: Scope
) -> tuple[dict[str, Any], dict[str, Any]]:
    current = await quarterly_return(session, quarter=quarter, scope=scope)
    previous = await quarterly_return(session, quarter=quarter.previous(), scope=scope)
    return current, province_return.diff(current, previous)


_TOWN = Annotated[str | None, Query(pattern=r"^\d{9}$", description="9-digit town code")]


@router.get(
    "/returns/{quarter}",
    response_model=ProvinceReturnPublic,
    responses={200: {"content": {XLSX: {}}, "description": "JSON, or XLSX for `.xlsx`"}},
)
async def get_return(
    quarter: str,
    session: SessionDep,
    town: _TOWN = None,
    format: Annotated[Literal["json", "xlsx"] | None, Query()] = None,
    principal: Principal = READ,
) -> Any:
    """季度动态监测: the quarter's return (`2026Q4`), rows within the caller's regions (and
    `town`); `2026Q4.xlsx` or `?format=xlsx` for the county office's workbook, which adds
    the differences from the previous quarter. A closed quarter's return is as stored."""
    if quarter.endswith(".xlsx"):
        quarter, format = quarter.removesuffix(".xlsx"), "xlsx"
    q, scope = parse_quarter(quarter, domain.today()), town_scope(principal, town)
    if format != "xlsx":
        return await quarterly_return(session, quarter=q, scope=scope)
    current, diff = await _return_and_diff(session, quarter=q, scope=scope)
    data = await asyncio.to_thread(workbook_bytes, current, diff)
    return xlsx_response(data, name=f"季度动态监测上报_{q}", ascii_name=f"province-return-{q}")


@router.get("/returns/{quarter}/diff", response_model=ReturnDiff)
async def get_return_diff(
    quarter: str, session: SessionDep, town: _TOWN = None, principal: Principal = READ
) -> Any:
    """The quarter's return against the previous quarter's: rows added, removed and
    changed per section (by key), and each count's change."""
    q, scope = parse_quarter(quarter, domain.today()), town_scope(principal, town)
    _, diff = await _return_and_diff(session, quarter=q, scope=scope)
    return diff
