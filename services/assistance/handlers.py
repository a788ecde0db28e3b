"""One function per command or event. Each command opens its unit of work, loads, decides
with `domain`, writes and publishes through the outbox, and commits once; event handlers
get the consumer's session and never commit."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from sqlalchemy import ColumnElement, TextClause, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import (
    Assignee,
    FindingObserved,
    IncomeFinding,
    MonitoringStarted,
    RectificationOverdue,
    RiskEliminated,
    TaskCompleted,
    TaskOpened,
    TaskOverdue,
)
from backstop.contracts.registry import HouseholdEvent
from backstop.contracts.risk import AlertRaised
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import CloudEvent, make_event
from backstop.logs import correlation_id
from backstop.pagination import decode_cursor, encode_cursor
from services.assistance import domain
from services.assistance.models import (
    AccountabilityAction,
    AccountabilityCreate,
    AppraisalCreate,
    Case,
    CasePublic,
    CaseStep,
    Clue,
    DepositCreate,
    EliminationCreate,
    EvidenceCreate,
    EvidencePublic,
    Fund,
    FundCreate,
    FundPublic,
    FundStatement,
    Grant,
    GrantCreate,
    GrantPublic,
    Household,
    IdempotencyKey,
    IssueClose,
    IssueCreate,
    IssuePublic,
    LedgerEntry,
    Measure,
    MeasurePublic,
    NoticeCreate,
    Plan,
    PlanCreate,
    PlanPublic,
    PolicyVersion,
    RectificationEvidence,
    ReviewCreate,
    StatementLine,
    StepPublic,
    SupervisionIssue,
    Task,
    TaskClaim,
    TaskComplete,
    TaskPrecheck,
    Visit,
    VisitCreate,
    new_id,
    utcnow,
)

log = logging.getLogger("assistance.handlers")
SERVICE = "assistance"


def make_assistance_event(payload: Any, subject: str) -> CloudEvent:
    """An assistance event carrying the correlation id of what started the chain."""
    return make_event(SERVICE, payload, subject=subject, correlation_id=correlation_id.get())


# ------------------------------------------------------------------------ cursors


# ------------------------------------------------------------------------- policy


async def load_policy(session: AsyncSession) -> domain.AssistancePolicy:
    row = (
        await session.execute(
            select(PolicyVersion).order_by(col(PolicyVersion.version).desc()).limit(1)
        )
    ).scalar_one_or_none()
    return domain.AssistancePolicy() if row is None else domain.AssistancePolicy(**row.body)


async def update_policy(
    sessions: SessionFactory, *, changes: dict[str, Any], changed_by: str
) -> tuple[int, domain.AssistancePolicy]:
    """A new policy version: the current one with `changes` applied."""
    async with unit_of_work(sessions) as session:
        current = await load_policy(session)
        merged = {**current.model_dump(mode="json"), **changes}
        try:
            policy = domain.AssistancePolicy(**merged)
        except ValueError as exc:
            errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
            first = errors[0] if errors else {"loc": (), "msg": str(exc)}
            raise invalid(["body", "policy", *first["loc"]], str(first["msg"])) from None
        unknown = sorted(set(changes) - set(domain.AssistancePolicy.model_fields))
        if unknown:
            raise invalid(["body", "policy", unknown[0]], "unknown policy setting")
        version = (
            await session.scalar(select(func.coalesce(func.max(PolicyVersion.version), 0)))
        ) or 0
        session.add(
            PolicyVersion(
                version=version + 1,
                body=policy.model_dump(mode="json"),
                changed_by=changed_by,
                changed_at=utcnow(),
            )
        )
    return version + 1, policy


# --------------------------------------------------------------- household facts


async def apply_household(session: AsyncSession, event: CloudEvent) -> None:
    """Keep the read model of registry's household (newest version wins)."""
    payload = event.payload()
    assert isinstance(payload, HouseholdEvent)
    h = payload.household
    stmt = insert(Household).values(
        household_id=h.household_id,
        region_code=h.region_code,
        town_code=h.town_code,
        type=h.type,
        monitoring_status=h.monitoring_status,
        monitoring_since=h.monitoring_since,
        version=h.version,
        snapshot=h.model_dump(mode="json"),
    )
    excluded = stmt.excluded
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Household.__table__.c.household_id],  # type: ignore[attr-defined]
            set_={
                "region_code": excluded.region_code,
                "town_code": excluded.town_code,
                "type": excluded.type,
                "monitoring_status": excluded.monitoring_status,
                "monitoring_since": excluded.monitoring_since,
                "version": excluded.version,
                "snapshot": excluded.snapshot,
            },
            where=col(Household.version) < excluded.version,
        )
    )


async def get_household(session: AsyncSession, household_id: str) -> Household | None:
    return await session.get(Household, household_id)


# ------------------------------------------------------------------------- tasks


def task_data(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "kind": task.kind,
        "household_id": task.household_id,
        "region_code": task.region_code,
        "assignee": Assignee(type=task.assignee_type, code=task.assignee_code),
        "due_on": task.due_on,
        "reason": task.reason,
        "factors": task.factors,
    }


async def open_verification(
    session: AsyncSession,
    *,
    household_id: str,
    region_code: str,
    factors: Sequence[str],
    origin: str,
    origin_ref: str | None,
    opened_on: date,
    reason: str | None = None,
) -> tuple[Task, bool]:
    """Open the household's verification task, or join the one already open (the partial
    unique index makes this hold under concurrency and redelivery). Returns (task, opened)."""
    policy = await load_policy(session)
    # The insurer rule is for department data (alerts); a clue is checked by the town.
    assignment = (
        domain.assign_verification(region_code=region_code, factors=factors, policy=policy)
        if origin == "alert"
        else domain.Assignment("town", domain.town_of(region_code))
    )
    values = {
        "id": new_id(),
        "kind": "verification",
        "household_id": household_id,
        "region_code": region_code,
        "status": "open",
        "assignee_type": assignment.type,
        "assignee_code": assignment.code,
        "due_on": domain.due_on(opened_on, policy),
        "reason": reason or domain.reason_for(factors),
        "factors": list(dict.fromkeys(factors)),
        "origin": origin,
        "origin_ref": origin_ref,
        "needs_precheck": assignment.needs_precheck,
        "opened_at": utcnow(),
        "guarantees": {},
    }
    inserted = await session.scalar(
        insert(Task)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[Task.__table__.c.household_id],  # type: ignore[attr-defined]
            index_where=text_open_verification(),
        )
        .returning(col(Task.id))
    )
    if inserted is not None:
        task = await session.get(Task, inserted)
        assert task is not None
        await outbox.publish(
            session, make_assistance_event(TaskOpened(**task_data(task)), household_id)
        )
        return task, True
    task = (
        await session.execute(
            select(Task)
            .where(
                col(Task.household_id) == household_id,
                col(Task.kind) == "verification",
                col(Task.status) == "open",
            )
            .with_for_update()
        )
    ).scalar_one()
    new_factors = [f for f in factors if f not in task.factors]
    if new_factors:  # a later alert adds what it saw to the open task
        task.factors = [*task.factors, *new_factors]
        task.reason = domain.reason_for(task.factors)
    return task, False


def text_open_verification() -> TextClause:
    # Literal SQL: index inference must see the partial index's own predicate.
    return text("status = 'open' AND kind = 'verification'")


async def on_alert_raised(session: AsyncSession, event: CloudEvent) -> None:
    """risk.alerts → one verification task per household (入户核实)."""
    alert = event.payload()
    assert isinstance(alert, AlertRaised)
    task, opened = await open_verification(
        session,
        household_id=alert.household_id,
        region_code=alert.region_code,
        factors=alert.factors,
        origin="alert",
        origin_ref=event.id,
        opened_on=domain.today(),
    )
    log.info(
        "alert for household %s %s task %s",
        alert.household_id,
        "opened" if opened else "joined",
        task.id,
    )


async def _task_for_update(session: AsyncSession, task_id: str, principal: Principal) -> Task:
    task = (
        await session.execute(select(Task).where(col(Task.id) == task_id).with_for_update())
    ).scalar_one_or_none()
    if task is None or not principal.can_see(task.region_code):
        raise Problem(404, f"task {task_id} not found")
    return task


def _require_open(task: Task) -> None:
    if task.status != "open":
        raise Problem(409, f"task {task.id} is already {task.status}", current_status=task.status)


async def claim_task(
    sessions: SessionFactory, *, task_id: str, body: TaskClaim, principal: Principal
) -> Task:
    async with unit_of_work(sessions) as session:
        task = await _task_for_update(session, task_id, principal)
        _require_open(task)
        if task.claimed_by and task.claimed_by != body.claimed_by:
            raise Problem(409, f"task {task.id} is already claimed by {task.claimed_by}")
        if task.claimed_by is None:
            task.claimed_by, task.claimed_at = body.claimed_by, utcnow()
    return task


async def precheck_task(
    sessions: SessionFactory, *, task_id: str, body: TaskPrecheck, principal: Principal
) -> Task:
    """县级初核 of a department-flagged case before the insurer verifies it. A case that
    fails the first check (e.g. a data error) is cancelled."""
    async with unit_of_work(sessions) as session:
        task = await _task_for_update(session, task_id, principal)
        _require_open(task)
        if not task.needs_precheck:
            raise Problem(409, f"task {task.id} needs no county first check")
        if task.prechecked_at is not None:
            raise Problem(409, f"task {task.id} was already checked by {task.prechecked_by}")
        task.prechecked_by, task.prechecked_at = body.checked_by, utcnow()
        if not body.passed:
            task.status, task.completed_at = "cancelled", utcnow()
            task.notes = body.notes
    return task


async def complete_task(
    sessions: SessionFactory, *, task_id: str, body: TaskComplete, principal: Principal
) -> tuple[Task, str | None]:
    """Close a verification with its outcome. A confirmed one opens the identification
    procedure (unless the household is already monitored); observations flow back to
    registry as a finding. Returns (task, case id)."""
    async with unit_of_work(sessions) as session:
        task = await _task_for_update(session, task_id, principal)
        _require_open(task)
        if task.needs_precheck and task.prechecked_at is None:
            raise Problem(409, f"task {task.id} awaits the county's first check (初核)")
        task.status, task.completed_at = "done", utcnow()
        task.outcome, task.verified_by, task.notes = body.outcome, body.verified_by, body.notes
        task.guarantees = {str(k): str(v) for k, v in body.guarantees.items()}
        await outbox.publish(
            session,
            make_assistance_event(
                TaskCompleted(
                    **task_data(task), outcome=body.outcome, verified_by=body.verified_by
                ),
                task.household_id,
            ),
        )
        if body.guarantees or body.income or body.schooling:
            await _publish_finding(
                session,
                household_id=task.household_id,
                region_code=task.region_code,
                observed_by=body.verified_by,
                observed_on=domain.today(),
                origin="review" if task.kind == "review" else "verification",
                guarantees={str(k): str(v) for k, v in body.guarantees.items()},
                income=body.income.model_dump() if body.income else None,
                schooling=body.schooling,
                notes=body.notes,
            )
        await _close_clues_of(session, task)
        case_id: str | None = None
        if body.outcome == "confirmed":
            household = await get_household(session, task.household_id)
            if household is None or household.monitoring_status != "monitored":
                case = Case(
                    kind="identification",
                    household_id=task.household_id,
                    region_code=task.region_code,
                    task_id=task.id,
                    monitoring_type=body.monitoring_type
                    or domain.monitoring_type_for(
                        household.type if household else None, task.factors
                    ),
                    risk_factors=list(task.factors),
                    opened_by=body.verified_by,
                )
                session.add(case)
                try:
                    await session.flush()
                except Exception as exc:  # one procedure in progress per household
                    raise Problem(
                        409, "an identification procedure is already in progress"
                    ) from exc
                case_id = case.id
    return task, case_id


async def _close_clues_of(session: AsyncSession, task: Task) -> None:
    """The clues that opened or joined this task get its outcome (read back by the filer)."""
    await session.execute(
        update(Clue)
        .where(col(Clue.task_id) == task.id, col(Clue.status) != "closed")
        .values(
            status="closed",
            outcome=task.outcome,
            outcome_notes=task.notes,
            outcome_by=task.verified_by,
            closed_at=utcnow(),
        )
    )


async def _publish_finding(
    session: AsyncSession,
    *,
    household_id: str,
    region_code: str,
    observed_by: str,
    observed_on: date,
    origin: str,
    guarantees: dict[str, str],
    income: dict[str, Any] | None,
    schooling: dict[str, str],
    notes: str | None,
) -> None:
    finding = FindingObserved(
        household_id=household_id,
        region_code=region_code,
        observed_by=observed_by,
        observed_on=observed_on,
        origin=origin,
        guarantees=guarantees,
        income=IncomeFinding(**income) if income else None,
        schooling=schooling,
        notes=notes,
    )
    await outbox.publish(session, make_assistance_event(finding, household_id))


def task_status(task: Task, on: date) -> str:
    return (
        "overdue" if domain.is_overdue(status=task.status, due=task.due_on, on=on) else task.status
    )


async def list_tasks(
    session: AsyncSession,
    *,
    principal: Principal,
    household_id: str | None,
    kind: str | None,
    status: str | None,
    assignee_code: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Task], str | None]:
    on = domain.today()
    query = select(Task).where(principal.region_clause(col(Task.region_code)))
    if household_id:
        query = query.where(col(Task.household_id) == household_id)
    if kind:
        query = query.where(col(Task.kind) == kind)
    if assignee_code:
        query = query.where(col(Task.assignee_code) == assignee_code)
    if status == "overdue":
        query = query.where(col(Task.status) == "open", col(Task.due_on) < on)
    elif status:
        query = query.where(col(Task.status) == status)
    after = decode_cursor(cursor, datetime.fromisoformat, str)
    if after is not None:
        at, key = after
        query = query.where(
            or_(
                col(Task.opened_at) > at,
                and_(col(Task.opened_at) == at, col(Task.id) > key),
            )
        )
    rows = list(
        (
            await session.execute(
                query.order_by(col(Task.opened_at), col(Task.id)).limit(limit + 1)
            )
        ).scalars()
    )
    next_cursor = (
        encode_cursor(rows[limit - 1].opened_at, rows[limit - 1].id) if len(rows) > limit else None
    )
    return rows[:limit], next_cursor


async def case_of_task(session: AsyncSession, task_id: str) -> str | None:
    return await session.scalar(select(col(Case.id)).where(col(Case.task_id) == task_id).limit(1))


Claimable = TypeVar("Claimable", Task, SupervisionIssue, Clue)


async def claim_once(
    session: AsyncSession,
    model: type[Claimable],
    stamp: str,
    *due: ColumnElement[bool],
    at: datetime | None = None,
) -> list[Claimable]:
    """Stamp `stamp` on up to 1,000 rows that match `due` and carry no stamp yet, and return
    them. Rows are claimed FOR UPDATE SKIP LOCKED and stamped by a conditional UPDATE, so
    replicas running the same job at once never take the same row: each event leaves once."""
    table = model.__table__  # type: ignore[attr-defined]
    claimed = (
        select(table.c.id)
        .where(*due, table.c[stamp].is_(None))
        .limit(1000)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(model)
        .where(table.c.id.in_(claimed), table.c[stamp].is_(None))
        .values({stamp: at or utcnow()})
        .returning(model)
    )
    return list(rows.scalars())


async def emit_overdue_tasks(sessions: SessionFactory, *, on: date | None = None) -> int:
    """Emit task.overdue once per task past its due date. The conditional UPDATE claims the
    rows, so two replicas running this at once never emit the same task twice."""
    on = on or domain.today()
    async with unit_of_work(sessions) as session:
        tasks = await claim_once(
            session, Task, "overdue_emitted_at", col(Task.status) == "open", col(Task.due_on) < on
        )
        await outbox.publish_many(
            session,
            [
                make_assistance_event(
                    TaskOverdue(**task_data(t), days_overdue=domain.days_overdue(t.due_on, on)),
                    t.household_id,
                )
                for t in tasks
            ],
        )
    return len(tasks)


# ---------------------------------------------------------------- procedures


async def _case_for_update(session: AsyncSession, case_id: str, principal: Principal) -> Case:
    case = (
        await session.execute(select(Case).where(col(Case.id) == case_id).with_for_update())
    ).scalar_one_or_none()
    if case is None or not principal.can_see(case.region_code):
        raise Problem(404, f"case {case_id} not found")
    return case


async def _steps(session: AsyncSession, case_id: str) -> list[CaseStep]:
    return list(
        (
            await session.execute(
                select(CaseStep).where(col(CaseStep.case_id) == case_id).order_by(col(CaseStep.id))
            )
        ).scalars()
    )


async def case_public(session: AsyncSession, case: Case) -> CasePublic:
    steps = await _steps(session, case.id)
    done = [s.step for s in steps]
    return CasePublic(
        id=case.id,
        kind=case.kind,
        household_id=case.household_id,
        region_code=case.region_code,
        status=case.status,
        task_id=case.task_id,
        monitoring_type=case.monitoring_type,
        risk_factors=case.risk_factors,
        elimination_method=case.elimination_method,
        reason=case.reason,
        next_step=domain.next_step(done) if case.status == "in_progress" else None,
        steps=[
            StepPublic(
                step=s.step,
                label=domain.STEP_LABELS[s.step],
                acted_by=s.acted_by,
                acted_on=s.acted_on,
                recorded_at=s.recorded_at,
                passed=s.passed,
                details=s.details,
            )
            for s in steps
        ],
        opened_by=case.opened_by,
        opened_at=case.opened_at,
        decided_on=case.decided_on,
        decided_by=case.decided_by,
    )


async def get_case(session: AsyncSession, *, case_id: str, principal: Principal) -> CasePublic:
    case = await session.get(Case, case_id)
    if case is None or not principal.can_see(case.region_code):
        raise Problem(404, f"case {case_id} not found")
    return await case_public(session, case)


async def list_cases(
    session: AsyncSession,
    *,
    principal: Principal,
    household_id: str | None,
    kind: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[CasePublic], str | None]:
    query = select(Case).where(principal.region_clause(col(Case.region_code)))
    if household_id:
        query = query.where(col(Case.household_id) == household_id)
    if kind:
        query = query.where(col(Case.kind) == kind)
    if status:
        query = query.where(col(Case.status) == status)
    after = decode_cursor(cursor, datetime.fromisoformat, str)
    if after is not None:
        at, key = after
        query = query.where(
            or_(col(Case.opened_at) > at, and_(col(Case.opened_at) == at, col(Case.id) > key))
        )
    rows = list(
        (
            await session.execute(
                query.order_by(col(Case.opened_at), col(Case.id)).limit(limit + 1)
            )
        ).scalars()
    )
    next_cursor = (
        encode_cursor(rows[limit - 1].opened_at, rows[limit - 1].id) if len(rows) > limit else None
    )
    return [await case_public(session, c) for c in rows[:limit]], next_cursor


async def _begin_step(
    session: AsyncSession, case_id: str, step: str, principal: Principal
) -> tuple[Case, list[CaseStep]]:
    case = await _case_for_update(session, case_id, principal)
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
        try:
            passed = domain.appraisal_passed(
                attendance=body.attendance,
                votes_for=body.votes_for,
                votes_against=body.votes_against,
            )
        except ValueError as exc:
            raise invalid(["body", "votes_for"], str(exc)) from None
        session.add(
            CaseStep(
                case_id=case.id,
                step="appraisal",
                acted_by=body.chaired_by,
                acted_on=body.held_on,
                passed=passed,
                details=body.model_dump(mode="json"),
            )
        )
        if not passed:
            _decide(case, "rejected", body.held_on, body.chaired_by)
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
        session.add(
            CaseStep(
                case_id=case.id,
                step="notice",
                acted_by=body.recorded_by,
                acted_on=body.end_on,
                passed=True,
                details=body.model_dump(mode="json"),
            )
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
        session.add(
            CaseStep(
                case_id=case.id,
                step=step,
                acted_by=body.reviewed_by,
                acted_on=body.reviewed_on,
                passed=body.approved,
                details=body.model_dump(mode="json"),
            )
        )
        if not body.approved:
            _decide(case, "rejected", body.reviewed_on, body.reviewed_by)
        elif step == "county_approval":
            _decide(case, "approved", body.reviewed_on, body.reviewed_by)
            await outbox.publish(session, _decision_event(case))
        await session.flush()
        return await case_public(session, case)


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
        household = await get_household(session, body.household_id)
        if household is None:
            raise invalid(["body", "household_id"], "unknown household")
        principal.require_region(household.region_code)
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


# ------------------------------------------------------------------------ visits


async def record_visit(
    sessions: SessionFactory, *, body: VisitCreate, principal: Principal
) -> Visit:
    """Log a contact; what it observes flows back to registry as a finding."""
    async with unit_of_work(sessions) as session:
        household = await get_household(session, body.household_id)
        if household is None:
            raise invalid(["body", "household_id"], "unknown household")
        principal.require_region(household.region_code)
        if body.visited_on > domain.today():
            raise invalid(["body", "visited_on"], "a visit cannot be in the future")
        visit = Visit(
            household_id=household.household_id,
            region_code=household.region_code,
            channel=body.channel,
            visitor=body.visitor,
            visited_on=body.visited_on,
            findings=body.findings,
            guarantees={str(k): str(v) for k, v in body.guarantees.items()},
        )
        session.add(visit)
        if body.guarantees or body.income or body.schooling:
            await _publish_finding(
                session,
                household_id=household.household_id,
                region_code=household.region_code,
                observed_by=body.visitor,
                observed_on=body.visited_on,
                origin="visit",
                guarantees={str(k): str(v) for k, v in body.guarantees.items()},
                income=body.income.model_dump() if body.income else None,
                schooling=body.schooling,
                notes=body.findings,
            )
    return visit


async def list_visits(
    session: AsyncSession, *, principal: Principal, household_id: str | None, limit: int
) -> list[Visit]:
    query = select(Visit).where(principal.region_clause(col(Visit.region_code)))
    if household_id:
        query = query.where(col(Visit.household_id) == household_id)
    query = query.order_by(col(Visit.visited_on).desc(), col(Visit.id)).limit(limit)
    return list((await session.execute(query)).scalars())


async def contact_compliance(
    session: AsyncSession, *, principal: Principal, period: str, region: str | None
) -> domain.ComplianceReport:
    start, end = domain.period_bounds(period)
    query = select(Household).where(
        principal.region_clause(col(Household.region_code)),
        or_(col(Household.monitoring_status) == "monitored", col(Household.type) == "marginal"),
    )
    if region:
        query = query.where(col(Household.region_code).startswith(region))
    households = list((await session.execute(query)).scalars())
    due = [
        domain.ContactDue(
            household_id=h.household_id,
            region_code=h.region_code,
            town_code=h.town_code,
            contacts=[(c["name"], c["role"]) for c in h.snapshot.get("contacts", [])],
        )
        for h in households
        if domain.due_for_contact(household_type=h.type, monitoring_status=h.monitoring_status)
    ]
    contacted = set(
        (
            await session.execute(
                select(col(Visit.household_id))
                .where(
                    col(Visit.household_id).in_([d.household_id for d in due]),
                    col(Visit.visited_on) >= start,
                    col(Visit.visited_on) < end,
                )
                .distinct()
            )
        ).scalars()
    )
    return domain.compliance(period, due, contacted)


# ------------------------------------------------------------------------- plans


def plan_public(plan: Plan, measures: Sequence[Measure]) -> PlanPublic:
    return PlanPublic(
        id=plan.id,
        household_id=plan.household_id,
        region_code=plan.region_code,
        tier=plan.tier,
        year=plan.year,
        created_by=plan.created_by,
        created_at=plan.created_at,
        measures=[
            MeasurePublic.model_validate(m).model_copy(
                update={"label": domain.MEASURES.get(m.category, m.category)}
            )
            for m in measures
        ],
    )


async def create_plan(
    sessions: SessionFactory, *, body: PlanCreate, principal: Principal
) -> PlanPublic:
    async with unit_of_work(sessions) as session:
        household = await get_household(session, body.household_id)
        if household is None:
            raise invalid(["body", "household_id"], "unknown household")
        principal.require_region(household.region_code)
        for i, m in enumerate(body.measures):
            problem = domain.measure_problem(body.tier, m.category)
            if problem:
                raise invalid(["body", "measures", i, "category"], problem)
            if m.end_on < m.start_on:
                raise invalid(["body", "measures", i, "end_on"], "ends before it starts")
        plan = Plan(
            household_id=household.household_id,
            region_code=household.region_code,
            tier=body.tier,
            year=body.year,
            created_by=body.created_by,
        )
        session.add(plan)
        await session.flush()  # the plan row before its measures (no ORM relationship)
        measures = [
            Measure(plan_id=plan.id, household_id=plan.household_id, **m.model_dump())
            for m in body.measures
        ]
        session.add_all(measures)
    return plan_public(plan, measures)


async def list_plans(
    session: AsyncSession, *, principal: Principal, household_id: str | None, limit: int
) -> list[PlanPublic]:
    query = select(Plan).where(principal.region_clause(col(Plan.region_code)))
    if household_id:
        query = query.where(col(Plan.household_id) == household_id)
    plans = list(
        (await session.execute(query.order_by(col(Plan.created_at).desc()).limit(limit))).scalars()
    )
    measures = list(
        (
            await session.execute(
                select(Measure).where(col(Measure.plan_id).in_([p.id for p in plans]))
            )
        ).scalars()
    )
    return [plan_public(p, [m for m in measures if m.plan_id == p.id]) for p in plans]


async def measure_gaps(
    session: AsyncSession, *, principal: Principal, region: str | None
) -> list[dict[str, Any]]:
    """Monitored households with no measure a month after identification."""
    policy = await load_policy(session)
    on = domain.today()
    query = select(Household).where(
        principal.region_clause(col(Household.region_code)),
        col(Household.monitoring_status) == "monitored",
    )
    if region:
        query = query.where(col(Household.region_code).startswith(region))
    households = list((await session.execute(query)).scalars())
    rows = await session.execute(
        select(col(Measure.household_id), func.count())
        .where(col(Measure.household_id).in_([h.household_id for h in households]))
        .group_by(col(Measure.household_id))
    )
    counts: dict[str, int] = {household_id: n for household_id, n in rows.all()}
    return [
        {
            "household_id": h.household_id,
            "region_code": h.region_code,
            "town_code": h.town_code,
            "monitoring_since": h.monitoring_since,
        }
        for h in households
        if domain.lacks_measures(
            monitored_since=h.monitoring_since,
            measure_count=counts.get(h.household_id, 0),
            on=on,
            policy=policy,
        )
    ]


# ------------------------------------------------------------------------- funds


def request_hash(path: str, body: Any) -> str:
    return hashlib.sha256(
        path.encode() + b"\n" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


async def _replay(
    session: AsyncSession, *, key: str, fingerprint: str
) -> tuple[int, dict[str, Any]] | None:
    """Claim an idempotency key in this transaction. A concurrent request with the same key
    waits on the unique index until this one commits, then replays its response."""
    inserted = await session.scalar(
        insert(IdempotencyKey)
        .values(key=key, request_hash=fingerprint, status_code=0, response={}, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(col(IdempotencyKey.key))
    )
    if inserted is not None:
        return None
    stored = await session.get(IdempotencyKey, key)
    assert stored is not None
    if stored.request_hash != fingerprint:
        raise Problem(
            422,
            "this Idempotency-Key was used with a different request",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "reused with another body"}],
        )
    return stored.status_code, stored.response


async def _remember(
    session: AsyncSession, *, key: str, status_code: int, response: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(col(IdempotencyKey.key) == key)
        .values(status_code=status_code, response=response)
    )


async def create_fund(sessions: SessionFactory, *, body: FundCreate) -> Fund:
    if body.level == "town" and not body.town_code:
        raise invalid(["body", "town_code"], "a town fund names its town")
    if body.level == "city" and body.kind == "town":
        raise invalid(["body", "kind"], "a town fund is at town level")
    async with unit_of_work(sessions) as session:
        if await session.scalar(select(col(Fund.id)).where(col(Fund.code) == body.code)):
            raise Problem(409, f"fund {body.code} already exists")
        fund = Fund(**body.model_dump(), balance=Decimal("0.00"))
        session.add(fund)
    return fund


async def list_funds(session: AsyncSession, *, principal: Principal) -> list[Fund]:
    query = select(Fund).order_by(col(Fund.level), col(Fund.code))
    funds = list((await session.execute(query)).scalars())
    return [f for f in funds if f.town_code is None or principal.can_see(f.town_code)]


async def _fund(session: AsyncSession, fund_id: str, loc: list[str | int]) -> Fund:
    fund = await session.get(Fund, fund_id)
    if fund is None:
        raise invalid(loc, "unknown fund", status=404 if loc[0] == "path" else 422)
    return fund


async def deposit(
    sessions: SessionFactory,
    *,
    fund_id: str,
    body: DepositCreate,
    idempotency_key: str,
    principal: Principal,
) -> tuple[int, dict[str, Any]]:
    """A donation or allocation into a fund: fund cash debit, donations credit."""
    async with unit_of_work(sessions) as session:
        key = f"{principal.sub}:{idempotency_key}"
        fingerprint = request_hash(f"deposit:{fund_id}", body.model_dump(mode="json"))
        replay = await _replay(session, key=key, fingerprint=fingerprint)
        if replay:
            return replay
        await _fund(session, fund_id, ["path", "fund_id"])
        txn = new_id()
        amount = domain.money(body.amount)
        balance = await session.scalar(
            update(Fund)
            .where(col(Fund.id) == fund_id)
            .values(balance=col(Fund.balance) + amount)
            .returning(col(Fund.balance))
        )
        memo = body.memo or f"捐赠/拨入：{body.donor}"
        session.add_all(
            [
                LedgerEntry(
                    txn_id=txn,
                    fund_id=fund_id,
                    account=f"fund:{fund_id}",
                    amount=amount,
                    kind="deposit",
                    memo=memo,
                    posted_on=body.received_on,
                ),
                LedgerEntry(
                    txn_id=txn,
                    fund_id=fund_id,
                    account=f"donations:{body.donor}",
                    amount=-amount,
                    kind="deposit",
                    memo=memo,
                    posted_on=body.received_on,
                ),
            ]
        )
        response = {
            "txn_id": txn,
            "fund_id": fund_id,
            "amount": str(amount),
            "balance": str(balance),
        }
        await _remember(session, key=key, status_code=201, response=response)
    return 201, response


async def grant(
    sessions: SessionFactory, *, body: GrantCreate, idempotency_key: str, principal: Principal
) -> tuple[int, dict[str, Any]]:
    """A grant to a household, split between a city fund and the town's fund by the
    configured ratio (市镇两级按比例分担). Each fund pays with a conditional UPDATE
    (`balance >= part`), so concurrent grants never take a balance below zero; either both
    parts are paid or neither (one transaction)."""
    async with unit_of_work(sessions) as session:
        key = f"{principal.sub}:{idempotency_key}"
        fingerprint = request_hash("grant", body.model_dump(mode="json"))
        replay = await _replay(session, key=key, fingerprint=fingerprint)
        if replay:
            return replay
        household = await get_household(session, body.household_id)
        if household is None:
            raise invalid(["body", "household_id"], "unknown household")
        principal.require_region(household.region_code)
        city = await _pick_fund(session, body.city_fund_id, level="city", town_code=None)
        town = await _pick_fund(
            session, body.town_fund_id, level="town", town_code=household.town_code
        )
        policy = await load_policy(session)
        amount = domain.money(body.amount)
        city_part, town_part = domain.split_grant(
            amount, policy.city_share_for(household.town_code)
        )
        granted_on = body.granted_on or domain.today()
        grant_row = Grant(
            household_id=household.household_id,
            region_code=household.region_code,
            amount=amount,
            city_fund_id=city.id,
            town_fund_id=town.id,
            city_part=city_part,
            town_part=town_part,
            purpose=body.purpose,
            granted_on=granted_on,
            granted_by=body.granted_by,
        )
        # Always lock funds in id order so two grants never deadlock.
        for fund, part in sorted(((city, city_part), (town, town_part)), key=lambda p: p[0].id):
            if part <= 0:
                continue
            paid = await session.scalar(
                update(Fund)
                .where(col(Fund.id) == fund.id, col(Fund.balance) >= part)
                .values(balance=col(Fund.balance) - part)
                .returning(col(Fund.id))
            )
            if paid is None:
                raise Problem(
                    409,
                    f"fund {fund.code} cannot pay {part}: the balance is too low",
                    title="Insufficient balance",
                    errors=[
                        {"loc": ["body", "amount"], "msg": f"exceeds the balance of {fund.code}"}
                    ],
                    fund_id=fund.id,
                )
            memo = f"救助补助：{body.purpose}"
            session.add_all(
                [
                    LedgerEntry(
                        txn_id=grant_row.id,
                        fund_id=fund.id,
                        account=f"fund:{fund.id}",
                        amount=-part,
                        kind="grant",
                        memo=memo,
                        posted_on=granted_on,
                    ),
                    LedgerEntry(
                        txn_id=grant_row.id,
                        fund_id=fund.id,
                        account=f"grants:{household.household_id}",
                        amount=part,
                        kind="grant",
                        memo=memo,
                        posted_on=granted_on,
                    ),
                ]
            )
        session.add(grant_row)
        response = GrantPublic.model_validate(grant_row).model_dump(mode="json")
        await _remember(session, key=key, status_code=201, response=response)
    return 201, response


async def _pick_fund(
    session: AsyncSession, fund_id: str | None, *, level: str, town_code: str | None
) -> Fund:
    loc: list[str | int] = ["body", f"{level}_fund_id"]
    if fund_id:
        fund = await _fund(session, fund_id, loc)
        if fund.level != level:
            raise invalid(loc, f"not a {level} fund")
        if level == "town" and fund.town_code != town_code:
            raise invalid(loc, "the town fund belongs to another town")
        return fund
    query = select(Fund).where(col(Fund.level) == level)
    if level == "town":
        query = query.where(col(Fund.town_code) == town_code)
    else:  # the charity association's fund first (慈善协会扶贫基金)
        query = query.order_by((col(Fund.kind) != "charity"), col(Fund.created_at))
    found = (await session.execute(query.limit(1))).scalar_one_or_none()
    if found is None:
        raise invalid(
            loc, f"no {level} fund set up" + (f" for town {town_code}" if town_code else "")
        )
    return found


async def statement(
    session: AsyncSession, *, fund_id: str, date_from: date | None, date_to: date | None
) -> FundStatement:
    fund = await _fund(session, fund_id, ["path", "fund_id"])
    cash = f"fund:{fund.id}"
    opening = Decimal("0.00")
    if date_from is not None:
        opening = domain.money(
            await session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    col(LedgerEntry.account) == cash, col(LedgerEntry.posted_on) < date_from
                )
            )
            or 0
        )
    query = select(LedgerEntry).where(col(LedgerEntry.fund_id) == fund.id)
    if date_from is not None:
        query = query.where(col(LedgerEntry.posted_on) >= date_from)
    if date_to is not None:
        query = query.where(col(LedgerEntry.posted_on) <= date_to)
    entries = list(
        (
            await session.execute(query.order_by(col(LedgerEntry.posted_on), col(LedgerEntry.id)))
        ).scalars()
    )
    counterparts = {e.txn_id: e.account for e in entries if e.account != cash}
    balance, total_in, total_out = opening, Decimal("0.00"), Decimal("0.00")
    lines = []
    for e in entries:
        if e.account != cash:
            continue
        balance += e.amount
        if e.amount > 0:
            total_in += e.amount
        else:
            total_out -= e.amount
        lines.append(
            StatementLine(
                txn_id=e.txn_id,
                posted_on=e.posted_on,
                kind=e.kind,
                counterparty=counterparts.get(e.txn_id, ""),
                memo=e.memo,
                amount=e.amount,
                balance_after=balance,
            )
        )
    return FundStatement(
        fund=FundPublic.model_validate(fund),
        date_from=date_from,
        date_to=date_to,
        opening_balance=opening,
        total_in=total_in,
        total_out=total_out,
        closing_balance=balance,
        lines=lines,
    )


# -------------------------------------------------------------------- supervision


async def issue_public(session: AsyncSession, issue: SupervisionIssue) -> IssuePublic:
    evidence = list(
        (
            await session.execute(
                select(RectificationEvidence)
                .where(col(RectificationEvidence.issue_id) == issue.id)
                .order_by(col(RectificationEvidence.submitted_at))
            )
        ).scalars()
    )
    status = issue.status
    if status == "open" and domain.today() > issue.deadline:
        status = "overdue"
    return IssuePublic(
        **{
            k: getattr(issue, k)
            for k in IssuePublic.model_fields
            if k not in ("status", "evidence")
        },
        status=status,
        evidence=[EvidencePublic.model_validate(e) for e in evidence],
    )


async def create_issue(
    sessions: SessionFactory, *, body: IssueCreate, principal: Principal
) -> IssuePublic:
    principal.require_region(body.region_code)
    if body.deadline < body.found_on:
        raise invalid(["body", "deadline"], "the deadline is before the issue was found")
    async with unit_of_work(sessions) as session:
        issue = SupervisionIssue(**body.model_dump())
        session.add(issue)
        await session.flush()
        return await issue_public(session, issue)


async def _issue_for_update(
    session: AsyncSession, issue_id: str, principal: Principal
) -> SupervisionIssue:
    issue = (
        await session.execute(
            select(SupervisionIssue).where(col(SupervisionIssue.id) == issue_id).with_for_update()
        )
    ).scalar_one_or_none()
    if issue is None or not principal.can_see(issue.region_code):
        raise Problem(404, f"issue {issue_id} not found")
    return issue


async def add_evidence(
    sessions: SessionFactory, *, issue_id: str, body: EvidenceCreate, principal: Principal
) -> IssuePublic:
    async with unit_of_work(sessions) as session:
        issue = await _issue_for_update(session, issue_id, principal)
        if issue.status != "open":
            raise Problem(409, f"issue {issue.id} is already {issue.status}")
        session.add(RectificationEvidence(issue_id=issue.id, **body.model_dump()))
        await session.flush()
        return await issue_public(session, issue)


async def close_issue(
    sessions: SessionFactory, *, issue_id: str, body: IssueClose, principal: Principal
) -> IssuePublic:
    """整改到位: needs evidence; whoever verifies it is recorded."""
    async with unit_of_work(sessions) as session:
        issue = await _issue_for_update(session, issue_id, principal)
        if issue.status != "open":
            raise Problem(409, f"issue {issue.id} is already {issue.status}")
        has_evidence = await session.scalar(
            select(func.count()).where(col(RectificationEvidence.issue_id) == issue.id)
        )
        if not has_evidence:
            raise Problem(409, "an issue is closed only with rectification evidence")
        issue.status, issue.rectified_at, issue.verified_by = (
            "rectified",
            utcnow(),
            body.verified_by,
        )
        await session.flush()
        return await issue_public(session, issue)


async def list_issues(
    session: AsyncSession,
    *,
    principal: Principal,
    status: str | None,
    region: str | None,
    limit: int,
) -> list[IssuePublic]:
    query = select(SupervisionIssue).where(
        principal.region_clause(col(SupervisionIssue.region_code))
    )
    if region:
        query = query.where(col(SupervisionIssue.region_code).startswith(region))
    if status == "overdue":
        query = query.where(
            col(SupervisionIssue.status) == "open", col(SupervisionIssue.deadline) < domain.today()
        )
    elif status:
        query = query.where(col(SupervisionIssue.status) == status)
    rows = (
        await session.execute(query.order_by(col(SupervisionIssue.deadline)).limit(limit))
    ).scalars()
    return [await issue_public(session, i) for i in rows]


async def get_issue(session: AsyncSession, *, issue_id: str, principal: Principal) -> IssuePublic:
    issue = await session.get(SupervisionIssue, issue_id)
    if issue is None or not principal.can_see(issue.region_code):
        raise Problem(404, f"issue {issue_id} not found")
    return await issue_public(session, issue)


async def record_accountability(
    sessions: SessionFactory, *, body: AccountabilityCreate, principal: Principal
) -> AccountabilityAction:
    principal.require_region(body.region_code)
    async with unit_of_work(sessions) as session:
        if body.issue_id is not None and await session.get(SupervisionIssue, body.issue_id) is None:
            raise invalid(["body", "issue_id"], "unknown issue")
        action = AccountabilityAction(**body.model_dump())
        session.add(action)
    return action


async def list_accountability(
    session: AsyncSession, *, principal: Principal, region: str | None, limit: int
) -> list[AccountabilityAction]:
    query = select(AccountabilityAction).where(
        principal.region_clause(col(AccountabilityAction.region_code))
    )
    if region:
        query = query.where(col(AccountabilityAction.region_code).startswith(region))
    query = query.order_by(col(AccountabilityAction.decided_on).desc()).limit(limit)
    return list((await session.execute(query)).scalars())


async def emit_overdue_rectifications(sessions: SessionFactory, *, on: date | None = None) -> int:
    """rectification.overdue once per issue past its deadline (safe with two replicas)."""
    on = on or domain.today()
    async with unit_of_work(sessions) as session:
        issues = await claim_once(
            session,
            SupervisionIssue,
            "overdue_emitted_at",
            col(SupervisionIssue.status) == "open",
            col(SupervisionIssue.deadline) < on,
        )
        await outbox.publish_many(
            session,
            [
                make_assistance_event(
                    RectificationOverdue(
                        issue_id=i.id,
                        region_code=i.region_code,
                        responsible_unit=i.responsible_unit,
                        deadline=i.deadline,
                        summary=i.summary,
                    ),
                    i.region_code,
                )
                for i in issues
            ],
        )
    return len(issues)
