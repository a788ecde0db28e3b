"""The identification and elimination procedures: 民主评议 → 公示 → 乡镇审核 → 县级确认,
and 风险消除 (帮扶消除 with its guard, 自然消除 with its reason)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import MonitoringStarted, RiskEliminated
from backstop.db import SessionFactory, bind, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import CloudEvent
from backstop.pagination import encode_cursor
from services.assistance import domain
from services.assistance.common import (
    get_household,
    household_in_region,
    load_policy,
    locked,
    make_assistance_event,
    opened_page_where,
)
from services.assistance.models import (
    AppraisalCreate,
    Case,
    CasePublic,
    CaseStep,
    EliminationCreate,
    Household,
    NoticeCreate,
    ReviewCreate,
)


async def _steps(session: AsyncSession, case_id: str) -> list[CaseStep]:
    return list(
        (
            await session.execute(
                select(CaseStep).where(col(CaseStep.case_id) == case_id).order_by(col(CaseStep.id))
            )
        ).scalars()
    )


def case_view(
    case: Case | Mapping[str, Any], steps: Sequence[CaseStep | Mapping[str, Any]]
) -> dict[str, Any]:
    """The case as the API shows it (the JSON of `CasePublic`), as plain values from a
    `Case` or a row of `CASE_COLUMNS`, and its steps in the order they were recorded."""
    row = case.model_dump() if isinstance(case, Case) else case
    done = [s.model_dump() if isinstance(s, CaseStep) else s for s in steps]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "household_id": row["household_id"],
        "region_code": row["region_code"],
        "status": row["status"],
        "task_id": row["task_id"],
        "monitoring_type": row["monitoring_type"],
        "risk_factors": row["risk_factors"],
        "elimination_method": row["elimination_method"],
        "reason": row["reason"],
        "next_step": domain.next_step([s["step"] for s in done])
        if row["status"] == "in_progress"
        else None,
        "steps": [
            {
                "step": s["step"],
                "label": domain.STEP_LABELS[s["step"]],
                "acted_by": s["acted_by"],
                "acted_on": s["acted_on"],
                "recorded_at": s["recorded_at"],
                "passed": s["passed"],
                "details": s["details"],
            }
            for s in done
        ],
        "opened_by": row["opened_by"],
        "opened_at": row["opened_at"],
        "decided_on": row["decided_on"],
        "decided_by": row["decided_by"],
    }


async def case_public(session: AsyncSession, case: Case) -> CasePublic:
    return CasePublic.model_validate(case_view(case, await _steps(session, case.id)))


async def get_case(session: AsyncSession, *, case_id: str, principal: Principal) -> CasePublic:
    case = await session.get(Case, case_id)
    if case is None or not principal.can_see(case.region_code):
        raise Problem(404, f"case {case_id} not found")
    return await case_public(session, case)


# The columns `case_view` reads of a page of cases, then of each case's steps (none: NULL).
CASE_COLUMNS = (
    "id, kind, household_id, region_code, status, task_id, monitoring_type, risk_factors,"
    " elimination_method, reason, opened_by, opened_at, decided_on, decided_by"
)
STEP_COLUMNS = "s.step, s.acted_by, s.acted_on, s.recorded_at, s.passed, s.details"


async def list_cases(
    pg: asyncpg.Connection,
    *,
    principal: Principal,
    household_id: str | None,
    kind: str | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the cases the principal may see, in the order they were opened (the
    keyset of `common.opened_page`: `after` is the cursor's `opened_at, id`), with their
    steps, in one statement on a read connection; each as `case_view` shows it."""
    params: list[Any] = []
    where = opened_page_where(
        params,
        principal=principal,
        after=after,
        household_id=household_id,
        kind=kind,
        status=status,
    )
    rows = await pg.fetch(
        f"WITH page AS (SELECT {CASE_COLUMNS} FROM cases"
        f" WHERE {' AND '.join(where) or 'true'}"
        f" ORDER BY opened_at, id LIMIT {bind(params, limit + 1)})"
        f" SELECT page.*, {STEP_COLUMNS} FROM page LEFT JOIN case_steps s ON s.case_id = page.id"
        " ORDER BY page.opened_at, page.id, s.id",
        *params,
    )
    cases: list[asyncpg.Record] = []
    steps: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        if row["id"] not in steps:
            cases.append(row)
            steps[row["id"]] = []
        if row["step"] is not None:
            steps[row["id"]].append(row)
    last = cases[limit - 1] if len(cases) > limit else None
    return (
        [case_view(c, steps[c["id"]]) for c in cases[:limit]],
        encode_cursor(last["opened_at"], last["id"]) if last else None,
    )


async def _begin_step(
    session: AsyncSession, case_id: str, step: str, principal: Principal
) -> tuple[Case, list[CaseStep]]:
    case = await locked(session, Case, case_id, principal, "case")
    if case.status != "in_progress":
        raise Problem(409, f"case {case.id} is already {case.status}")
    steps = await _steps(session, case.id)
    try:
        domain.check_step_order([s.step for s in steps], step)
    except domain.StepOutOfOrder as exc:
        raise Problem(
            409,
            str(exc),
            errors=[{"loc": ["path", "step"], "msg": str(exc)}],
            expected_step=domain.next_step([s.step for s in steps]),
        ) from None
    return case, steps


async def record_appraisal(
    sessions: SessionFactory, *, case_id: str, body: AppraisalCreate, principal: Principal
) -> CasePublic:
    """民主评议: more votes for than against, or the case is rejected."""
    async with unit_of_work(sessions) as session:
        case, _ = await _begin_step(session, case_id, "appraisal", principal)
        if body.held_on > domain.today():
            raise invalid(["body", "held_on"], "the appraisal cannot be in the future")
        # Its previous step is the 入户核实 that confirmed the case: no backdating past it.
        verified_on = case.opened_at.astimezone(domain.CHINA).date()
        if body.held_on < verified_on:
            raise invalid(
                ["body", "held_on"],
                f"cannot be before the verification that opened the case ({verified_on})",
            )
        try:
            passed = domain.appraisal_passed(
                attendance=body.attendance,
                votes_for=body.votes_for,
                votes_against=body.votes_against,
            )
        except ValueError as exc:
            raise invalid(["body", "votes_for"], str(exc)) from None
        _record_step(
            session, case, "appraisal", body, by=body.chaired_by, on=body.held_on, passed=passed
        )
        await session.flush()
        return await case_public(session, case)


async def record_notice(
    sessions: SessionFactory, *, case_id: str, body: NoticeCreate, principal: Principal
) -> CasePublic:
    """公示: at least the policy's days, after the appraisal, every objection resolved."""
    async with unit_of_work(sessions) as session:
        case, steps = await _begin_step(session, case_id, "notice", principal)
        policy = await load_policy(session)
        appraisal = next(s for s in steps if s.step == "appraisal")
        problems = domain.notice_problems(
            start_on=body.start_on,
            end_on=body.end_on,
            appraised_on=appraisal.acted_on,
            unresolved_objections=sum(1 for o in body.objections if not o.resolution),
            on=domain.today(),
            policy=policy,
        )
        if problems:
            raise Problem(
                422,
                "; ".join(f"{f}: {m}" for f, m in problems),
                errors=[{"loc": ["body", f], "msg": m} for f, m in problems],
            )
        _record_step(
            session, case, "notice", body, by=body.recorded_by, on=body.end_on, passed=True
        )
        await session.flush()
        return await case_public(session, case)


async def record_review(
    sessions: SessionFactory,
    *,
    case_id: str,
    step: str,
    body: ReviewCreate,
    principal: Principal,
) -> CasePublic:
    """乡镇审核 (`town_review`) or 县级确认 (`county_approval`). County approval decides:
    identification → monitoring.started, elimination → risk.eliminated."""
    async with unit_of_work(sessions) as session:
        case, steps = await _begin_step(session, case_id, step, principal)
        if body.reviewed_on < steps[-1].acted_on:
            raise invalid(["body", "reviewed_on"], "cannot be before the previous step")
        if body.reviewed_on > domain.today():
            raise invalid(["body", "reviewed_on"], "cannot be in the future")
        if step == "county_approval" and body.approved and case.kind == "elimination":
            if case.elimination_method == "assisted":
                await _check_guard(session, case.household_id, on=body.reviewed_on)
        _record_step(
            session,
            case,
            step,
            body,
            by=body.reviewed_by,
            on=body.reviewed_on,
            passed=body.approved,
        )
        if body.approved and step == "county_approval":
            _decide(case, "approved", body.reviewed_on, body.reviewed_by)
            await outbox.publish(session, _decision_event(case))
        await session.flush()
        return await case_public(session, case)


def _record_step(
    session: AsyncSession,
    case: Case,
    step: str,
    body: BaseModel,
    *,
    by: str,
    on: date,
    passed: bool,
) -> None:
    """Add the step with what was submitted for it; a step that fails rejects the case."""
    session.add(
        CaseStep(
            case_id=case.id,
            step=step,
            acted_by=by,
            acted_on=on,
            passed=passed,
            details=body.model_dump(mode="json"),
        )
    )
    if not passed:
        _decide(case, "rejected", on, by)


def _decide(case: Case, status: str, on: date, by: str) -> None:
    case.status, case.decided_on, case.decided_by = status, on, by


def _decision_event(case: Case) -> CloudEvent:
    assert case.decided_on is not None and case.decided_by is not None
    if case.kind == "identification":
        return make_assistance_event(
            MonitoringStarted(
                household_id=case.household_id,
                region_code=case.region_code,
                case_id=case.id,
                monitoring_type=case.monitoring_type,
                risk_factors=case.risk_factors,
                decided_on=case.decided_on,
                approved_by=case.decided_by,
            ),
            case.household_id,
        )
    return make_assistance_event(
        RiskEliminated(
            household_id=case.household_id,
            region_code=case.region_code,
            case_id=case.id,
            method=case.elimination_method,
            reason=case.reason or "",
            decided_on=case.decided_on,
            approved_by=case.decided_by,
        ),
        case.household_id,
    )


async def _monitored_since(session: AsyncSession, household: Household) -> date | None:
    """Identification date: registry's, or our own approved identification."""
    if household.monitoring_since is not None:
        return household.monitoring_since
    return await session.scalar(
        select(func.max(Case.decided_on)).where(
            col(Case.household_id) == household.household_id,
            col(Case.kind) == "identification",
            col(Case.status) == "approved",
        )
    )


def elimination_facts(
    household: Household, monitored_since: date | None
) -> domain.EliminationFacts:
    snap = household.snapshot
    return domain.EliminationFacts(
        monitored_since=monitored_since,
        incomes=[
            domain.IncomeFact(year=int(i["year"]), per_capita=float(i["per_capita"]))
            for i in snap.get("incomes", [])
        ],
        guarantees=dict(snap.get("guarantees", {})),
        labor_capacities=[m.get("labor_capacity", "full") for m in snap.get("members", [])],
        contact_phones=[c.get("phone", "") for c in snap.get("contacts", [])],
    )


async def _check_guard(session: AsyncSession, household_id: str, *, on: date) -> None:
    household = await get_household(session, household_id)
    if household is None:
        raise invalid(["body", "household_id"], "household not known to assistance yet")
    failures = domain.elimination_guard(
        elimination_facts(household, await _monitored_since(session, household)),
        on=on,
        policy=await load_policy(session),
    )
    if failures:
        raise Problem(
            422,
            "帮扶消除 guard: " + "; ".join(f.message for f in failures),
            title="Elimination not allowed",
            errors=[{"loc": ["household", f.rule], "msg": f.message} for f in failures],
        )


async def open_elimination(
    sessions: SessionFactory, *, body: EliminationCreate, principal: Principal
) -> CasePublic:
    """风险消除: 帮扶消除 passes the guard now and again at county approval; 自然消除
    records its reason."""
    async with unit_of_work(sessions) as session:
        household = await household_in_region(session, body.household_id, principal)
        if body.method == "natural" and not body.reason:
            raise invalid(["body", "reason"], "a natural elimination records its reason")
        if body.method == "assisted":
            if household.monitoring_status != "monitored" and not await _monitored_since(
                session, household
            ):
                raise invalid(["body", "household_id"], "the household is not monitored")
            await _check_guard(session, household.household_id, on=domain.today())
        case = Case(
            kind="elimination",
            household_id=household.household_id,
            region_code=household.region_code,
            elimination_method=body.method,
            reason=body.reason or "帮扶消除：收入稳定超过监测线，风险已消除",
            opened_by=body.requested_by,
        )
        session.add(case)
        try:
            await session.flush()
        except Exception as exc:
            raise Problem(409, "an elimination procedure is already in progress") from exc
        return await case_public(session, case)
