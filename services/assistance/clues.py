"""线索 (clues): the channels of discovery besides department data — 农户自主申报 (a
household applies through 12317, a mini-program or the village office), 群众反映 (public
reports, anonymous allowed), 基层干部排查 (cadres on their monthly visits) and 督查调研
反馈 (inspections).

A clue that names a household, or a person found in the register, opens the household's
verification task or joins the one already open. The town accepts it within the policy's
time (default 48 hours) or it is escalated through notify (`clue.overdue`). Its outcome
is recorded — from the task it joined, or by hand for a person not in the register — and
read back by whoever filed it. The reporter's contact details are shown only to the
county office. ID numbers are kept only as their HMAC and masked form."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.app import RuntimeDep, SessionDep
from backstop.auth import Principal, require
from backstop.contracts.assistance import ClueOverdue
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem, invalid
from backstop.idnumber import InvalidIdNumber, id_hash, mask_id, parse_id_number
from backstop.requests import Phone, fold
from services.assistance import common, domain, enrolment, tasks
from services.assistance.models import Clue, Household, Strict, utcnow

router = APIRouter(prefix="/v1", tags=["clues"])
READ = require("assistance:read")
WRITE = require("assistance:write")

ClueSource = Literal["self_declaration", "public_report", "cadre_screening", "supervision"]
ClueOutcome = Literal["confirmed", "not_confirmed", "not_found", "duplicate"]


class PersonRef(Strict):
    name: str = Field(min_length=1, max_length=50)
    id_number: Annotated[str, BeforeValidator(fold), Field(min_length=15, max_length=18)] | None = (
        None
    )


class Reporter(Strict):
    name: str | None = Field(default=None, max_length=50)
    phone: Phone | None = None


class ClueCreate(Strict):
    source: ClueSource
    summary: str = Field(min_length=1, max_length=4000)
    household_id: str | None = Field(default=None, max_length=36)
    village_code: Annotated[str, BeforeValidator(fold), Field(pattern=r"^[0-9]{12}$")] | None = None
    person: PersonRef | None = None
    concerns: list[str] = Field(default_factory=list, max_length=15)  # factor codes
    anonymous: bool = False
    reporter: Reporter | None = None


class ClueAccept(Strict):
    accepted_by: str = Field(min_length=1, max_length=100)


class ClueOutcomeCreate(Strict):
    outcome: ClueOutcome
    recorded_by: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(default=None, max_length=4000)


class CluePublic(BaseModel):
    id: str
    source: str
    source_label: str
    status: str  # received | accepted | closed; "overdue" while not accepted in time
    household_id: str | None
    region_code: str
    person_name: str | None
    person_id_masked: str | None
    summary: str
    concerns: list[str]
    anonymous: bool
    reporter: Reporter | None  # the county office only
    filed_by: str
    received_at: datetime
    accept_by: datetime
    accepted_by: str | None
    accepted_at: datetime | None
    task_id: str | None
    outcome: str | None
    outcome_notes: str | None
    closed_at: datetime | None


def clue_public(clue: Clue, principal: Principal) -> CluePublic:
    now = utcnow()
    status = clue.status
    if status == "received" and now > clue.accept_by:
        status = "overdue"
    county = domain.sees_reporter(principal.regions, clue.region_code)
    reporter = (
        Reporter(name=clue.reporter_name, phone=clue.reporter_phone)
        if county and (clue.reporter_name or clue.reporter_phone)
        else None
    )
    return CluePublic(
        id=clue.id,
        source=clue.source,
        source_label=domain.CLUE_SOURCES[clue.source],
        status=status,
        household_id=clue.household_id,
        region_code=clue.region_code,
        person_name=clue.person_name,
        person_id_masked=clue.person_id_masked,
        summary=clue.summary,
        concerns=clue.concerns,
        anonymous=clue.anonymous,
        reporter=reporter,
        filed_by=clue.filed_by,
        received_at=clue.received_at,
        accept_by=clue.accept_by,
        accepted_by=clue.accepted_by,
        accepted_at=clue.accepted_at,
        task_id=clue.task_id,
        outcome=clue.outcome,
        outcome_notes=clue.outcome_notes,
        closed_at=clue.closed_at,
    )


async def _village_known(session: AsyncSession, village_code: str) -> bool:
    # Villages known to assistance are those of the households in its read model.
    found = await session.scalar(
        select(col(Household.household_id))
        .where(col(Household.region_code) == village_code)
        .limit(1)
    )
    return found is not None


async def file_clue(
    sessions: SessionFactory, *, body: ClueCreate, principal: Principal, pii_key: str
) -> Clue:
    """Record a clue and open (or join) the household's verification task when the
    household is known; a person not in the register is tracked all the same."""
    unknown = [c for c in body.concerns if c not in domain.FACTOR_LABELS]
    if unknown:
        raise invalid(["body", "concerns"], f"unknown factor code {unknown[0]}")
    if body.anonymous and body.source != "public_report":
        raise invalid(["body", "anonymous"], "only public reports may be anonymous")
    if not body.household_id and not body.village_code:
        raise invalid(["body", "village_code"], "name a household or a village")
    person_hash = person_masked = None
    if body.person and body.person.id_number:
        try:
            parsed = parse_id_number(body.person.id_number)
        except InvalidIdNumber as exc:
            raise invalid(["body", "person", "id_number"], str(exc)) from None
        person_hash, person_masked = id_hash(parsed.value, pii_key), mask_id(parsed.value)
    async with unit_of_work(sessions) as session:
        household: Household | None = None
        if body.household_id:
            household = await session.get(Household, body.household_id)
            principal.require_visible(
                household.region_code if household else None,
                invalid(["body", "household_id"], "unknown household"),
            )
            assert household is not None
            if body.village_code and body.village_code != household.region_code:
                raise invalid(["body", "village_code"], "the household is in another village")
        else:
            assert body.village_code is not None
            if not await _village_known(session, body.village_code):
                raise invalid(["body", "village_code"], "unknown village")
            if person_hash:
                found = await common.household_of_person(session, person_hash)
                # One registered elsewhere is not named: the clue stays with the village.
                household = found if found and principal.can_see(found.region_code) else None
        region_code = household.region_code if household else body.village_code
        assert region_code is not None
        principal.require_region(region_code)
        policy = await common.load_policy(session)
        received_at = utcnow()
        reporter = None if body.anonymous else body.reporter
        clue = Clue(
            source=body.source,
            household_id=household.household_id if household else None,
            region_code=region_code,
            person_name=body.person.name if body.person else None,
            person_id_hash=person_hash,
            person_id_masked=person_masked,
            summary=body.summary,
            concerns=list(dict.fromkeys(body.concerns)),
            anonymous=body.anonymous,
            reporter_name=reporter.name if reporter else None,
            reporter_phone=reporter.phone if reporter else None,
            filed_by=principal.sub,
            received_at=received_at,
            accept_by=domain.clue_accept_by(received_at, policy),
        )
        if household is not None:
            task, _ = await tasks.open_verification(
                session,
                household_id=household.household_id,
                region_code=household.region_code,
                factors=clue.concerns or ["other"],
                origin="clue",
                origin_ref=clue.id,
                opened_on=domain.today(),
                reason=domain.clue_reason(body.source, body.summary),
            )
            clue.task_id = task.id
        session.add(clue)
    return clue


async def accept_clue(
    sessions: SessionFactory, *, clue_id: str, body: ClueAccept, principal: Principal
) -> Clue:
    async with unit_of_work(sessions) as session:
        clue = await common.locked(session, Clue, clue_id, principal, "clue")
        if clue.status != "received":
            raise Problem(409, f"clue {clue.id} is already {clue.status}")
        clue.status, clue.accepted_by, clue.accepted_at = "accepted", body.accepted_by, utcnow()
    return clue


async def record_outcome(
    sessions: SessionFactory, *, clue_id: str, body: ClueOutcomeCreate, principal: Principal
) -> Clue:
    """By hand, for a clue without a task (e.g. a person not in the register)."""
    async with unit_of_work(sessions) as session:
        clue = await common.locked(session, Clue, clue_id, principal, "clue")
        if clue.status == "closed":
            raise Problem(409, f"clue {clue.id} already has its outcome")
        if clue.status == "received":
            raise Problem(409, f"clue {clue.id} must be accepted by the town first")
        if clue.task_id is not None or await enrolment.clue_has_check(session, clue.id):
            raise Problem(409, "this clue's outcome comes from its verification task")
        clue.status, clue.closed_at = "closed", utcnow()
        clue.outcome, clue.outcome_notes, clue.outcome_by = (
            body.outcome,
            body.notes,
            body.recorded_by,
        )
    return clue


async def emit_overdue_clues(sessions: SessionFactory, *, now: datetime | None = None) -> int:
    """clue.overdue once per clue the town has not accepted in time (safe with replicas)."""
    now = now or utcnow()
    async with unit_of_work(sessions) as session:
        clues = await common.claim_once(
            session,
            Clue,
            "escalated_at",
            col(Clue.status) == "received",
            col(Clue.accept_by) < now,
            at=now,
        )
        await outbox.publish_many(
            session,
            [
                common.make_assistance_event(
                    ClueOverdue(
                        clue_id=c.id,
                        region_code=c.region_code,
                        household_id=c.household_id,
                        source=c.source,
                        received_at=c.received_at,
                    ),
                    c.household_id or c.region_code,
                )
                for c in clues
            ],
        )
    return len(clues)


# ------------------------------------------------------------------------- routes


@router.post("/clues", status_code=201)
async def post_clue(
    body: ClueCreate, runtime: RuntimeDep, principal: Principal = WRITE
) -> CluePublic:
    clue = await file_clue(
        runtime.sessions, body=body, principal=principal, pii_key=runtime.settings.pii_key
    )
    return clue_public(clue, principal)


@router.get("/clues")
async def list_clues(
    session: SessionDep,
    status: Literal["received", "accepted", "closed", "overdue"] | None = None,
    region: str | None = Query(default=None, pattern=r"^\d{1,12}$"),
    mine: bool = Query(default=False, description="only the clues this client filed"),
    limit: int = Query(default=100, ge=1, le=500),
    principal: Principal = READ,
) -> dict[str, Any]:
    query = select(Clue).where(
        or_(
            principal.region_clause(col(Clue.region_code)),
            col(Clue.filed_by) == principal.sub,
        )
    )
    if mine:
        query = query.where(col(Clue.filed_by) == principal.sub)
    query = common.narrowed(
        query,
        Clue,
        region=region,
        status=status,
        overdue=[col(Clue.status) == "received", col(Clue.accept_by) < utcnow()],
    )
    rows = (await session.execute(query.order_by(col(Clue.received_at)).limit(limit))).scalars()
    return {"items": [clue_public(c, principal) for c in rows], "next_cursor": None}


@router.get("/clues/{clue_id}")
async def get_clue(clue_id: str, session: SessionDep, principal: Principal = READ) -> CluePublic:
    """Whoever filed the clue reads its outcome back, whatever their regions."""
    clue = await session.get(Clue, clue_id)
    if clue is None or not (principal.can_see(clue.region_code) or clue.filed_by == principal.sub):
        raise Problem(404, f"clue {clue_id} not found")
    return clue_public(clue, principal)


@router.post("/clues/{clue_id}/accept")
async def post_accept(
    clue_id: str, body: ClueAccept, runtime: RuntimeDep, principal: Principal = WRITE
) -> CluePublic:
    clue = await accept_clue(runtime.sessions, clue_id=clue_id, body=body, principal=principal)
    return clue_public(clue, principal)


@router.post("/clues/{clue_id}/outcome")
async def post_outcome(
    clue_id: str, body: ClueOutcomeCreate, runtime: RuntimeDep, principal: Principal = WRITE
) -> CluePublic:
    clue = await record_outcome(runtime.sessions, clue_id=clue_id, body=body, principal=principal)
    return clue_public(clue, principal)
