"""纳入建档立卡核查: checks of people not in the register.

Seed 二(一): 因病、因灾、因学支出达到监测预警线的名单下发各镇，及时入户核实…符合条件的，
及时纳入建档立卡范围; 二(三): 镇村入户核实后，符合条件的，严格认定程序，及时纳入建档立卡范围.

- risk's `unregistered.flagged` (a person's costs over the warning line) opens a check at
  the county, which hands it down to a town (`assign`: 下发各镇); new evidence joins the
  open check. A clue about a person not in the register becomes a check of the clue's
  town. One active check per person (`id_hash`).
- The town completes it: "not confirmed" closes it with its reason; "confirmed" means
  the household is registered the normal way (registry `POST /v1/households`).
- When the registry's household with the person arrives, the check is linked to it and,
  once confirmed, the household enters the identification procedure (认定程序: a case,
  as a confirmed verification opens one). datasync re-matches the person's waiting
  records to the household, so risk scores it from them.

Who the person is stays with datasync (`GET /v1/unmatched?id_hash=`, registry:pii) or on
the clue: a check holds only the `id_hash`.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.app import RuntimeDep, SessionDep
from backstop.auth import Level, Principal, require
from backstop.contracts.assistance import EnrolmentCheckOpened, EnrolmentCheckOverdue
from backstop.contracts.registry import HouseholdEvent
from backstop.contracts.risk import UnregisteredFlagged
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import CloudEvent
from backstop.settings import get_settings
from services.assistance import common, domain
from services.assistance.models import (
    ACTIVE_ENROLMENT_CHECK,
    Case,
    Clue,
    EnrolmentCheck,
    Household,
    Strict,
    TaskComplete,
    new_id,
    utcnow,
)

log = logging.getLogger("assistance.enrolment")
router = APIRouter(prefix="/v1", tags=["enrolment"])
READ = require("assistance:read")
WRITE = require("assistance:write")
KIND_LABEL = "纳入建档立卡核查"


# ------------------------------------------------------------------------- schemas


class CheckAssign(Strict):
    """下发各镇: the town that checks the person."""

    town_code: str = Field(pattern=r"^[0-9]{9}$")
    assigned_by: str = Field(min_length=1, max_length=100)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"town_code": "441881101", "assigned_by": "县乡村振兴局李某"}]
        }
    )


class CheckComplete(TaskComplete):
    """The home check's result with its checklist, as a verification's. "not_confirmed"
    needs its reason in `notes`; `schooling` (per registered member) does not apply."""

    @model_validator(mode="after")
    def _reason_and_no_members(self) -> CheckComplete:
        if self.outcome == "not_confirmed" and not self.notes:
            raise ValueError("notes: a check not confirmed closes with its reason")
        if self.schooling:
            raise ValueError("schooling: a person not in the register has no members yet")
        return self


class CheckFromClue(Strict):
    opened_by: str = Field(min_length=1, max_length=100)

    model_config = ConfigDict(json_schema_extra={"examples": [{"opened_by": "镇干部王某"}]})


class CheckPublic(BaseModel):
    id: str
    kind: str
    kind_label: str
    id_hash: str  # the person's reference: GET datasync /v1/unmatched?id_hash=
    region_code: str
    status: str  # open | done | cancelled; "overdue" while open past due_on
    assignee: dict[str, str]
    due_on: date
    reason: str
    factors: list[str]
    evidence: list[str]
    origin: str
    clue_id: str | None
    opened_at: datetime
    opened_by: str | None
    assigned_by: str | None
    assigned_at: datetime | None
    outcome: str | None
    verified_by: str | None
    notes: str | None
    completed_at: datetime | None
    household_id: str | None
    linked_at: datetime | None
    case_id: str | None
    next_step: str | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9d3a…",
                    "kind": "enrolment_check",
                    "kind_label": KIND_LABEL,
                    "id_hash": "3f6c…(64 hex)",
                    "region_code": "441881101",
                    "status": "done",
                    "assignee": {"type": "town", "code": "441881101"},
                    "due_on": "2026-12-11",
                    "reason": "medical costs 12,800 yuan in 12 months with no income on record",
                    "factors": ["illness"],
                    "evidence": ["medical:HOSP-2026-0042"],
                    "origin": "risk",
                    "clue_id": None,
                    "opened_at": "2026-12-01T02:00:00Z",
                    "opened_by": "risk",
                    "assigned_by": "县乡村振兴局李某",
                    "assigned_at": "2026-12-01T03:00:00Z",
                    "outcome": "confirmed",
                    "verified_by": "镇干部王某",
                    "notes": "户内无劳动力，医疗支出大",
                    "completed_at": "2026-12-04T06:00:00Z",
                    "household_id": None,
                    "linked_at": None,
                    "case_id": None,
                    "next_step": "register the household in registry (POST /v1/households);"
                    " it is linked when it arrives",
                }
            ]
        }
    )


class CheckPage(BaseModel):
    items: list[CheckPublic]
    next_cursor: str | None


def check_public(check: EnrolmentCheck) -> CheckPublic:
    status = check.status
    if domain.is_overdue(status=status, due=check.due_on, on=domain.today()):
        status = "overdue"
    next_step = (
        "register the household in registry (POST /v1/households); it is linked when it arrives"
        if check.outcome == "confirmed" and check.household_id is None
        else None
    )
    return CheckPublic(
        id=check.id,
        kind=check.kind,
        kind_label=KIND_LABEL,
        id_hash=check.id_hash,
        region_code=check.region_code,
        status=status,
        assignee={"type": check.assignee_type, "code": check.assignee_code},
        due_on=check.due_on,
        reason=check.reason,
        factors=check.factors,
        evidence=check.evidence,
        origin=check.origin,
        clue_id=check.clue_id,
        opened_at=check.opened_at,
        opened_by=check.opened_by,
        assigned_by=check.assigned_by,
        assigned_at=check.assigned_at,
        outcome=check.outcome,
        verified_by=check.verified_by,
        notes=check.notes,
        completed_at=check.completed_at,
        household_id=check.household_id,
        linked_at=check.linked_at,
        case_id=check.case_id,
        next_step=next_step,
    )


# ------------------------------------------------------------------------- commands


async def _active_check(session: AsyncSession, person: str) -> EnrolmentCheck | None:
    return (
        await session.execute(
            select(EnrolmentCheck)
            .where(col(EnrolmentCheck.id_hash) == person, text(ACTIVE_ENROLMENT_CHECK))
            .with_for_update()
        )
    ).scalar_one_or_none()


def _join(check: EnrolmentCheck, factors: list[str], evidence: list[str]) -> None:
    """New evidence joins the person's active check, as a new reason while it is open."""
    new_evidence = [e for e in evidence if e not in check.evidence]
    if not new_evidence:
        return
    check.evidence = [*check.evidence, *new_evidence]
    check.factors = list(dict.fromkeys([*check.factors, *factors]))
    if check.status == "open":
        check.reason = domain.with_new_evidence(check.reason, factors)[:2000]


async def _open(
    session: AsyncSession,
    *,
    person: str,
    region_code: str,
    assignee: tuple[str, str],
    factors: list[str],
    evidence: list[str],
    reason: str,
    origin: str,
    origin_ref: str,
    opened_by: str,
    clue_id: str | None = None,
    new_factors: list[str] | None = None,
) -> tuple[EnrolmentCheck, bool]:
    """Open the person's check, or join the active one with `new_factors` (default: all
    of `factors`); the partial unique index keeps it to one under concurrency and
    redelivery. Returns (check, opened)."""
    policy = await common.load_policy(session)
    inserted = await session.scalar(
        insert(EnrolmentCheck)
        .values(
            id=new_id(),
            kind="enrolment_check",
            id_hash=person,
            region_code=region_code,
            status="open",
            assignee_type=assignee[0],
            assignee_code=assignee[1],
            due_on=domain.due_on(domain.today(), policy),
            reason=reason,
            factors=factors,
            evidence=evidence,
            origin=origin,
            origin_ref=origin_ref,
            opened_by=opened_by,
            clue_id=clue_id,
            opened_at=utcnow(),
            checklist={},
        )
        .on_conflict_do_nothing()
        .returning(col(EnrolmentCheck.id))
    )
    if inserted is not None:
        check = await session.get(EnrolmentCheck, inserted)
        assert check is not None
        await _publish_opened(session, check)
        return check, True
    check = await _active_check(session, person)
    assert check is not None
    _join(check, factors if new_factors is None else new_factors, evidence)
    return check, False


async def _publish_opened(session: AsyncSession, check: EnrolmentCheck) -> None:
    """enrolment_check.opened, so notify reminds its assignee (keyed by the check)."""
    opened = EnrolmentCheckOpened(
        check_id=check.id,
        region_code=check.region_code,
        assignee_type="county" if check.assignee_type == "county" else "town",
        assignee_code=check.assignee_code,
        due_on=check.due_on,
        reason=check.reason,
        factors=check.factors,
    )
    await outbox.publish(session, common.make_assistance_event(opened, check.id))


async def on_unregistered_flagged(session: AsyncSession, event: CloudEvent) -> None:
    """risk's flag → the person's check at the county (which hands it to a town), or new
    evidence on the active one. A person registered meanwhile is the household's
    business: the records reach it through datasync's re-matching."""
    flag = event.payload()
    assert isinstance(flag, UnregisteredFlagged)
    if await common.household_of_person(session, flag.id_hash) is not None:
        log.info("flagged person is in the register now; no enrolment check")
        return
    evidence = list(dict.fromkeys(s for f in flag.factors for s in f.sources))
    county = get_settings().county_code
    check, opened = await _open(
        session,
        person=flag.id_hash,
        region_code=county,
        assignee=("county", county),
        factors=[f.code for f in flag.factors],
        new_factors=flag.new_evidence,
        evidence=evidence,
        reason=f"{KIND_LABEL}：" + "；".join(f.evidence for f in flag.factors),
        origin="department",
        origin_ref=event.id,
        opened_by="risk",
    )
    log.info("enrolment check %s %s", check.id, "opened" if opened else "joined")


async def open_from_clue(
    sessions: SessionFactory, *, clue_id: str, body: CheckFromClue, principal: Principal
) -> tuple[EnrolmentCheck, bool]:
    """A clue about a person not in the register → the person's check, by the clue's
    town (or joined to the person's active check). The clue keeps who the person is."""
    principal.require_level(Level.TOWN, "opening an enrolment check (纳入建档立卡核查)")
    async with unit_of_work(sessions) as session:
        clue = await common.locked(session, Clue, clue_id, principal, "clue")
        if clue.household_id is not None:
            raise Problem(409, "the clue names a registered household: its verification task")
        if clue.status != "accepted":
            raise Problem(409, f"clue {clue.id} is {clue.status}: a check follows an accepted clue")
        if clue.person_id_hash is None:
            raise invalid(
                ["path", "clue_id"],
                "the clue names no person's ID number: a check follows a person into the"
                " register by it",
            )
        if await common.household_of_person(session, clue.person_id_hash) is not None:
            raise Problem(409, "the person is in the register: the household's verification")
        check, opened = await _open(
            session,
            person=clue.person_id_hash,
            region_code=clue.region_code,
            assignee=("town", domain.town_of(clue.region_code)),
            factors=clue.concerns or ["other"],
            evidence=[f"clue:{clue.id}"],
            reason=f"{KIND_LABEL}：" + domain.clue_reason(clue.source, clue.summary),
            origin="clue",
            origin_ref=clue.id,
            opened_by=body.opened_by,
            clue_id=clue.id,
        )
        if check.clue_id is None:
            check.clue_id = clue.id
    return check, opened


async def assign_check(
    sessions: SessionFactory, *, check_id: str, body: CheckAssign, principal: Principal
) -> EnrolmentCheck:
    """下发各镇: the county hands an open check to one of its towns (or to another)."""
    principal.require_level(Level.COUNTY, "handing an enrolment check to a town (下发各镇)")
    async with unit_of_work(sessions) as session:
        check = await common.locked(session, EnrolmentCheck, check_id, principal, "check")
        if check.status != "open":
            raise Problem(409, f"check {check.id} is already {check.status}")
        county = check.region_code[:6]
        if not body.town_code.startswith(county):
            raise invalid(["body", "town_code"], f"not a town of county {county}")
        principal.require_region(body.town_code)
        check.region_code = body.town_code
        check.assignee_type, check.assignee_code = "town", body.town_code
        check.assigned_by, check.assigned_at = body.assigned_by, utcnow()
        # The town's time counts from the handover, as the insurer's does (集中交由).
        check.due_on = domain.due_on(domain.today(), await common.load_policy(session))
        check.overdue_emitted_at = None
        await _publish_opened(session, check)
    return check


async def complete_check(
    sessions: SessionFactory, *, check_id: str, body: CheckComplete, principal: Principal
) -> EnrolmentCheck:
    """The town's (or the county's) result. A confirmed check of a person whose household
    is already linked opens its identification case at once; otherwise when it links."""
    principal.require_level(Level.TOWN, "completing an enrolment check (纳入建档立卡核查)")
    async with unit_of_work(sessions) as session:
        check = await common.locked(session, EnrolmentCheck, check_id, principal, "check")
        if check.status != "open":
            raise Problem(409, f"check {check.id} is already {check.status}")
        if check.assignee_type == "county" and not principal.county_level:
            raise Problem(409, f"check {check.id} awaits the county's 下发各镇 to a town")
        check.status, check.completed_at = "done", utcnow()
        check.outcome, check.verified_by, check.notes = body.outcome, body.verified_by, body.notes
        check.checklist = {
            "guarantees": {str(k): str(v) for k, v in body.guarantees.items()},
            "income": body.income.model_dump(mode="json"),
            "monitoring_type": body.monitoring_type,
        }
        if check.outcome == "confirmed" and check.household_id is not None:
            household = await session.get(Household, check.household_id)
            if household is not None:
                await _confirmed_household(session, check, household)
        if check.clue_id is not None:
            await _close_clue(session, check)
    return check


async def _close_clue(session: AsyncSession, check: EnrolmentCheck) -> None:
    clue = await session.get(Clue, check.clue_id, with_for_update=True)
    if clue is not None and clue.status != "closed":
        clue.status, clue.closed_at = "closed", utcnow()
        clue.outcome, clue.outcome_notes, clue.outcome_by = (
            check.outcome,
            check.notes,
            check.verified_by,
        )


async def _confirmed_household(
    session: AsyncSession, check: EnrolmentCheck, household: Household
) -> None:
    """A confirmed check meets its household: what the home check saw goes to registry as
    a verification's finding, and the household enters 认定程序 — the identification case
    a confirmed verification opens (民主评议 → 公示 → 乡镇审核 → 县级确认 follow on it). A
    household already monitored, or with a case in progress, keeps what it has."""
    assert check.verified_by is not None and check.completed_at is not None
    observed = CheckComplete.model_validate(
        {"outcome": "confirmed", "verified_by": check.verified_by, **check.checklist}
    )
    await common.publish_finding(
        session,
        observed,
        household_id=household.household_id,
        region_code=household.region_code,
        observed_by=check.verified_by,
        observed_on=check.completed_at.astimezone(domain.CHINA).date(),
        origin="verification",
        notes=check.notes,
    )
    if household.monitoring_status == "monitored":
        return
    in_progress = await session.scalar(
        select(col(Case.id)).where(
            col(Case.household_id) == household.household_id,
            col(Case.kind) == "identification",
            col(Case.status) == "in_progress",
        )
    )
    if in_progress is not None:
        check.case_id = in_progress
        return
    case = Case(
        kind="identification",
        household_id=household.household_id,
        region_code=household.region_code,
        monitoring_type=observed.monitoring_type
        or domain.monitoring_type_for(household.type, check.factors),
        risk_factors=list(check.factors),
        opened_by=check.verified_by,
    )
    session.add(case)
    await session.flush()
    check.case_id = case.id
    log.info("enrolment check %s: household entered the identification procedure", check.id)


async def link_household(session: AsyncSession, event: CloudEvent) -> None:
    """A registry household holding the person of an active check: the check follows the
    household (its village's region) and, once confirmed, the household enters the
    identification procedure."""
    payload = event.payload()
    assert isinstance(payload, HouseholdEvent)
    snapshot = payload.household
    hashes = [m.id_hash for m in snapshot.members]
    if not hashes:
        return
    checks = (
        (
            await session.execute(
                select(EnrolmentCheck)
                .where(
                    col(EnrolmentCheck.id_hash).in_(hashes),
                    col(EnrolmentCheck.household_id).is_(None),
                    text(ACTIVE_ENROLMENT_CHECK),
                )
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    if not checks:
        return
    household = await session.get(Household, snapshot.household_id)
    assert household is not None  # the read model was written just before
    for check in checks:
        check.household_id, check.linked_at = snapshot.household_id, utcnow()
        check.region_code = snapshot.region_code
        if check.status == "open":
            check.assignee_type, check.assignee_code = "town", domain.town_of(snapshot.region_code)
        if check.outcome == "confirmed":
            await _confirmed_household(session, check, household)
        log.info("enrolment check %s linked to household %s", check.id, snapshot.household_id)


async def emit_overdue_checks(sessions: SessionFactory, *, on: date | None = None) -> int:
    """enrolment_check.overdue once per open check past its due date (safe with
    replicas: the rows are claimed, as the tasks' overdue job claims them)."""
    on = on or domain.today()
    async with unit_of_work(sessions) as session:
        checks = await common.claim_once(
            session,
            EnrolmentCheck,
            "overdue_emitted_at",
            col(EnrolmentCheck.status) == "open",
            col(EnrolmentCheck.due_on) < on,
        )
        await outbox.publish_many(
            session,
            [
                common.make_assistance_event(
                    EnrolmentCheckOverdue(
                        check_id=c.id,
                        region_code=c.region_code,
                        due_on=c.due_on,
                        days_overdue=domain.days_overdue(c.due_on, on),
                    ),
                    c.id,
                )
                for c in checks
            ],
        )
    return len(checks)


async def clue_has_check(session: AsyncSession, clue_id: str) -> bool:
    found = await session.scalar(
        select(col(EnrolmentCheck.id)).where(col(EnrolmentCheck.clue_id) == clue_id).limit(1)
    )
    return found is not None


# ------------------------------------------------------------------------- routes

CheckStatus = Literal["open", "done", "cancelled", "overdue"]


@router.get("/enrolment-checks")
async def list_checks(
    session: SessionDep,
    status: CheckStatus | None = None,
    outcome: Literal["confirmed", "not_confirmed"] | None = None,
    region: str | None = Query(default=None, pattern=r"^\d{1,12}$"),
    id_hash: str | None = Query(default=None, pattern=r"^[0-9a-f]{64}$"),
    limit: int = Query(default=100, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=200),
    principal: Principal = READ,
) -> CheckPage:
    """Checks in the caller's regions, oldest first: the county sees the ones to hand
    down (region = the county), a town those handed to it."""
    query = select(EnrolmentCheck).where(principal.region_clause(col(EnrolmentCheck.region_code)))
    if outcome:
        query = query.where(col(EnrolmentCheck.outcome) == outcome)
    if id_hash:
        query = query.where(col(EnrolmentCheck.id_hash) == id_hash)
    query = common.narrowed(
        query,
        EnrolmentCheck,
        region=region,
        status=status,
        overdue=[col(EnrolmentCheck.status) == "open", col(EnrolmentCheck.due_on) < domain.today()],
    )
    rows, next_cursor = await common.opened_page(
        session, query, EnrolmentCheck, cursor=cursor, limit=limit
    )
    return CheckPage(items=[check_public(c) for c in rows], next_cursor=next_cursor)


@router.get("/enrolment-checks/{check_id}")
async def get_check(check_id: str, session: SessionDep, principal: Principal = READ) -> CheckPublic:
    check = await session.get(EnrolmentCheck, check_id)
    principal.require_visible(
        check.region_code if check else None, Problem(404, f"check {check_id} not found")
    )
    assert check is not None
    return check_public(check)


@router.post("/enrolment-checks/{check_id}/assign")
async def post_assign(
    check_id: str, body: CheckAssign, runtime: RuntimeDep, principal: Principal = WRITE
) -> CheckPublic:
    check = await assign_check(runtime.sessions, check_id=check_id, body=body, principal=principal)
    return check_public(check)


@router.post("/enrolment-checks/{check_id}/complete")
async def post_complete(
    check_id: str, body: CheckComplete, runtime: RuntimeDep, principal: Principal = WRITE
) -> CheckPublic:
    check = await complete_check(
        runtime.sessions, check_id=check_id, body=body, principal=principal
    )
    return check_public(check)


@router.post("/clues/{clue_id}/enrolment-check", status_code=201)
async def post_from_clue(
    clue_id: str, body: CheckFromClue, runtime: RuntimeDep, principal: Principal = WRITE
) -> CheckPublic:
    check, _ = await open_from_clue(
        runtime.sessions, clue_id=clue_id, body=body, principal=principal
    )
    return check_public(check)
