"""入户核实: verification tasks opened by alerts and clues, the county's first check
(初核) of department-flagged cases, claiming, completing, listing and the overdue job."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy import TextClause, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Level, Principal
from backstop.contracts.assistance import (
    Assignee,
    TaskCompleted,
    TaskHandedOver,
    TaskOpened,
    TaskOverdue,
)
from backstop.contracts.risk import AlertRaised, AlertRenewed, AssessmentChanged
from backstop.db import SessionFactory, bind, unit_of_work
from backstop.errors import Problem
from backstop.events import CloudEvent
from backstop.pagination import encode_cursor
from services.assistance import domain
from services.assistance.common import (
    claim_once,
    get_household,
    load_policy,
    locked,
    make_assistance_event,
    opened_page_where,
    publish_finding,
)
from services.assistance.models import (
    Case,
    Clue,
    Task,
    TaskClaim,
    TaskComplete,
    TaskHandover,
    TaskPrecheck,
    new_id,
    utcnow,
)

log = logging.getLogger("assistance.tasks")
INSURER_SCOPE = "assistance:insurer"  # 人保公司


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
    level: str = "at_risk",
    new_evidence: bool = False,
) -> tuple[Task, bool]:
    """Open the household's verification task, or join the one already open (the partial
    unique index makes this hold under concurrency and redelivery). Returns (task, opened).

    `level` "watch" gives the longer due date; joining an open task keeps the earlier due
    date. `new_evidence` (a renewed alert) adds its factors to the open task's reason even
    when their codes are already there."""
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
        "due_on": (due := domain.due_on(opened_on, policy, level)),
        "reason": reason or domain.reason_for(factors, level),
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
    if assignment.type == "insurer" and task.assignee_type != "insurer":
        # 初核 → 人保公司 always happens for a department-flagged case (seed 三(三)3), even
        # when the town was already checking the household: the case is handed on.
        task.assignee_type, task.assignee_code = assignment.type, assignment.code
        task.needs_precheck, task.prechecked_at, task.prechecked_by = (
            assignment.needs_precheck,
            None,
            None,
        )
        task.claimed_by, task.claimed_at = None, None
    new_factors = [f for f in factors if f not in task.factors]
    if new_factors:  # a later alert adds what it saw to the open task
        task.factors = [*task.factors, *new_factors]
        # The watch wording stays only while nothing above watch has joined.
        watch_only = level == "watch" and task.origin == "watch"
        task.reason = domain.reason_for(task.factors, "watch" if watch_only else "at_risk")
    elif new_evidence:  # a new record of a factor already there: a new reason all the same
        task.reason = domain.with_new_evidence(task.reason, factors)[:MAX_REASON]
    task.due_on = min(task.due_on, due)
    return task, False


MAX_REASON = 2000


def text_open_verification() -> TextClause:
    # Literal SQL: index inference must see the partial index's own predicate.
    return text("status = 'open' AND kind = 'verification'")


async def on_alert_raised(session: AsyncSession, event: CloudEvent) -> None:
    """risk.alerts → one verification task per household (入户核实). A renewed alert (new
    evidence while at_risk) opens a new one after a "not confirmed" check, or joins the
    open one as a new reason."""
    alert = event.payload()
    assert isinstance(alert, AlertRaised | AlertRenewed)
    renewed = isinstance(alert, AlertRenewed)
    task, opened = await open_verification(
        session,
        household_id=alert.household_id,
        region_code=alert.region_code,
        factors=alert.new_evidence if isinstance(alert, AlertRenewed) else alert.factors,
        origin="alert",
        origin_ref=event.id,
        opened_on=domain.today(),
        new_evidence=renewed,
    )
    log.info(
        "alert for household %s %s task %s",
        alert.household_id,
        "opened" if opened else "joined",
        task.id,
    )


async def on_watch_level(session: AsyncSession, event: CloudEvent) -> None:
    """risk.assessments → a home check for a household newly at `watch` (seed 二(二):
    "可能存在问题尚无致贫返贫风险"…由镇村干部及时入户核实), by its town, with the longer
    due date. A rise to at_risk comes as an alert and joins it."""
    change = event.payload()
    assert isinstance(change, AssessmentChanged)
    if change.level != "watch" or change.previous_level not in (None, "none"):
        return
    await open_verification(
        session,
        household_id=change.household_id,
        region_code=change.region_code,
        factors=[f.code for f in change.factors],
        origin="watch",
        origin_ref=event.id,
        opened_on=domain.today(),
        level="watch",
    )


async def _open_task(session: AsyncSession, task_id: str, principal: Principal) -> Task:
    task = await locked(session, Task, task_id, principal, "task")
    if task.status != "open":
        raise Problem(409, f"task {task.id} is already {task.status}", current_status=task.status)
    return task


async def claim_task(
    sessions: SessionFactory, *, task_id: str, body: TaskClaim, principal: Principal
) -> Task:
    async with unit_of_work(sessions) as session:
        task = await _open_task(session, task_id, principal)
        if task.claimed_by and task.claimed_by != body.claimed_by:
            raise Problem(409, f"task {task.id} is already claimed by {task.claimed_by}")
        if task.claimed_by is None:
            task.claimed_by, task.claimed_at = body.claimed_by, utcnow()
    return task


async def precheck_task(
    sessions: SessionFactory, *, task_id: str, body: TaskPrecheck, principal: Principal
) -> Task:
    """县级初核 of a department-flagged case before the insurer verifies it. A case that
    fails the first check (e.g. a data error) is cancelled. A case that passes waits for
    the county's 集中交由 (`hand_over`)."""
    principal.require_level(Level.COUNTY, "the first check (初核)")
    _not_insurer(principal, "the first check (初核)")
    async with unit_of_work(sessions) as session:
        task = await _open_task(session, task_id, principal)
        if not task.needs_precheck:
            raise Problem(409, f"task {task.id} needs no county first check")
        if task.prechecked_at is not None:
            raise Problem(409, f"task {task.id} was already checked by {task.prechecked_by}")
        task.prechecked_by, task.prechecked_at = body.checked_by, utcnow()
        if not body.passed:
            task.status, task.completed_at = "cancelled", utcnow()
            task.notes = body.notes
    return task


def _not_insurer(principal: Principal, act: str) -> None:
    if principal.has(INSURER_SCOPE):
        raise Problem(403, f"{act} is the county's, not the insurer's")


async def hand_over(
    sessions: SessionFactory, *, body: TaskHandover, principal: Principal
) -> list[Task]:
    """集中交由人保公司 (seed 三(三)3: 市扶贫办经初核后，集中交由人保公司按程序入户核实处理):
    the county hands pre-checked insurer cases over in one batch, all or none. The
    insurer's due date counts from the handover."""
    principal.require_level(Level.COUNTY, "handing cases to the insurer (集中交由)")
    _not_insurer(principal, "handing cases to the insurer (集中交由)")
    async with unit_of_work(sessions) as session:
        policy = await load_policy(session)
        today, now = domain.today(), utcnow()
        handed: list[Task] = []
        for i, task_id in enumerate(dict.fromkeys(body.task_ids)):
            task = await _open_task(session, task_id, principal)
            problem = (
                "is not the insurer's"
                if task.assignee_type != "insurer"
                else "awaits the county's first check (初核)"
                if task.needs_precheck and task.prechecked_at is None
                else "was already handed over"
                if task.handed_over_at is not None
                else None
            )
            if problem:
                raise Problem(
                    409,
                    f"task {task.id} {problem}",
                    errors=[{"loc": ["body", "task_ids", i], "msg": problem}],
                )
            task.handed_over_by, task.handed_over_at = body.handed_by, now
            task.due_on, task.overdue_emitted_at = domain.due_on(today, policy), None
            handed.append(task)
        await outbox.publish_many(
            session,
            [
                make_assistance_event(
                    TaskHandedOver(
                        **task_data(task), handed_over_by=body.handed_by, handed_over_at=now
                    ),
                    task.household_id,
                )
                for task in handed
            ],
        )
    return handed


async def complete_task(
    sessions: SessionFactory, *, task_id: str, body: TaskComplete, principal: Principal
) -> tuple[Task, str | None]:
    """Close a verification with its outcome. A confirmed one opens the identification
    procedure (unless the household is already monitored); observations flow back to
    registry as a finding. Returns (task, case id).

    An insurer's task is completed by the insurer (scope `assistance:insurer`) or the
    county, once handed over; the insurer completes no other task."""
    async with unit_of_work(sessions) as session:
        task = await _open_task(session, task_id, principal)
        insurer = principal.has(INSURER_SCOPE)
        if task.assignee_type == "insurer":
            if not (insurer or principal.county_level):
                raise Problem(403, f"task {task.id} is the insurer's (人保公司) to complete")
            if task.needs_precheck and task.prechecked_at is None:
                raise Problem(409, f"task {task.id} awaits the county's first check (初核)")
            if task.needs_precheck and task.handed_over_at is None:
                raise Problem(409, f"task {task.id} awaits the handover to the insurer (集中交由)")
        elif insurer:
            raise Problem(403, f"task {task.id} is not the insurer's")
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
        await publish_finding(
            session,
            body,
            household_id=task.household_id,
            region_code=task.region_code,
            observed_by=body.verified_by,
            observed_on=domain.today(),
            origin="review" if task.kind == "review" else "verification",
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


# The columns `api.task_public` reads: the list's one statement selects only these.
TASK_COLUMNS = (
    "id, kind, household_id, region_code, status, due_on, assignee_type, assignee_code,"
    " reason, factors, origin, needs_precheck, prechecked_by, handed_over_at, opened_at,"
    " claimed_by, completed_at, outcome, verified_by, notes, guarantees"
)


async def list_tasks(
    pg: asyncpg.Connection,
    *,
    principal: Principal,
    household_id: str | None,
    kind: str | None,
    status: str | None,
    assignee_code: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> tuple[list[asyncpg.Record], str | None]:
    """One page of the tasks the principal may see, in the order they were opened (the
    keyset of `common.opened_page`: `after` is the cursor's `opened_at, id`), read in one
    statement on a read connection: rows of `TASK_COLUMNS`. "overdue" is still open and
    past its due date."""
    params: list[Any] = []
    conditions = opened_page_where(
        params,
        principal=principal,
        after=after,
        household_id=household_id,
        kind=kind,
        assignee_code=assignee_code,
    )
    if status == "overdue":
        conditions.append(f"status = 'open' AND due_on < {bind(params, domain.today())}")
    elif status:
        conditions.append(f"status = {bind(params, status)}")
    rows = await pg.fetch(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE {' AND '.join(conditions) or 'true'}"
        f" ORDER BY opened_at, id LIMIT {bind(params, limit + 1)}",
        *params,
    )
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], encode_cursor(last["opened_at"], last["id"]) if last else None


async def case_of_task(session: AsyncSession, task_id: str) -> str | None:
    return await session.scalar(select(col(Case.id)).where(col(Case.task_id) == task_id).limit(1))


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
