"""What every use case of assistance shares: its events, the policy (帮扶政策参数), the
read model of registry's households, the row a command locks (404 outside the caller's
regions), a list's filters and pages, the finding sent back to registry, and the
claim-once stamp of the overdue jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import FindingObserved, IncomeFinding
from backstop.contracts.registry import HouseholdEvent
from backstop.db import SessionFactory, bind, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import CloudEvent, make_event
from backstop.logs import correlation_id
from backstop.pagination import decode_cursor, encode_cursor
from services.assistance import domain
from services.assistance.models import (
    AssistanceBase,
    Case,
    Clue,
    EnrolmentCheck,
    Household,
    PolicyVersion,
    SupervisionIssue,
    Task,
    TaskComplete,
    VisitCreate,
    utcnow,
)

SERVICE = "assistance"


def make_assistance_event(payload: Any, subject: str) -> CloudEvent:
    """An assistance event carrying the correlation id of what started the chain."""
    return make_event(SERVICE, payload, subject=subject, correlation_id=correlation_id.get())


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


async def household_of_person(session: AsyncSession, person_hash: str) -> Household | None:
    """The household in the read model that holds the person (by id_hash), if any."""
    return (
        await session.execute(
            select(Household)
            .where(col(Household.snapshot)["members"].contains([{"id_hash": person_hash}]))
            .limit(1)
        )
    ).scalar_one_or_none()


async def household_in_region(
    session: AsyncSession, household_id: str, principal: Principal
) -> Household:
    """The household a command's body names: 422 when assistance does not know it or it
    lies outside the caller's regions (alike: no region oracle)."""
    household = await get_household(session, household_id)
    principal.require_visible(
        household.region_code if household else None,
        invalid(["body", "household_id"], "unknown household"),
    )
    assert household is not None
    return household


Regional = TypeVar("Regional", Task, Case, Clue, SupervisionIssue, EnrolmentCheck)


async def locked(
    session: AsyncSession, model: type[Regional], row_id: str, principal: Principal, noun: str
) -> Regional:
    """The row a command changes, locked FOR UPDATE; 404 alike when it does not exist and
    when it lies outside the caller's regions."""
    row = (
        await session.execute(select(model).where(col(model.id) == row_id).with_for_update())
    ).scalar_one_or_none()
    if row is None or not principal.can_see(row.region_code):
        raise Problem(404, f"{noun} {row_id} not found")
    return row


Row = TypeVar("Row")


def narrowed(
    query: Select[Row],
    model: Any,
    *,
    region: str | None = None,
    status: str | None = None,
    overdue: Sequence[ColumnElement[bool]] = (),
) -> Select[Row]:
    """A list's shared filters: a region prefix, and a status, where "overdue" is the
    list's own test of lateness (`overdue`: still open and past its date)."""
    if region:
        query = query.where(col(model.region_code).startswith(region))
    if status == "overdue":
        query = query.where(*overdue)
    elif status:
        query = query.where(col(model.status) == status)
    return query


Opened = TypeVar("Opened", Task, Case, EnrolmentCheck)


async def opened_page(
    session: AsyncSession,
    query: Select[Opened],
    model: type[Opened],
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[Opened], str | None]:
    """One page of a list in the order its rows were opened (keyset on opened_at, id)."""
    after = decode_cursor(cursor, datetime.fromisoformat, str)
    if after is not None:
        at, key = after
        query = query.where(
            or_(col(model.opened_at) > at, and_(col(model.opened_at) == at, col(model.id) > key))
        )
    rows = list(
        (
            await session.execute(
                query.order_by(col(model.opened_at), col(model.id)).limit(limit + 1)
            )
        ).scalars()
    )
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], encode_cursor(last.opened_at, last.id) if last else None


def opened_page_where(
    params: list[Any],
    *,
    principal: Principal,
    after: tuple[datetime, str] | None,
    **equal: str | None,
) -> list[str]:
    """The conditions of a list read on a read connection in opened order (the keyset of
    `opened_page`): the principal's regions, `column = value` for each value given, and
    after the cursor's `opened_at, id`; their values appended to `params`."""
    regions = principal.region_condition("region_code", params)
    conditions = [regions] if regions else []
    conditions += [f"{column} = {bind(params, v)}" for column, v in equal.items() if v]
    if after is not None:
        at, key = bind(params, after[0]), bind(params, after[1])
        conditions.append(f"(opened_at, id) > ({at}, {key})")
    return conditions


async def publish_finding(
    session: AsyncSession,
    observed: TaskComplete | VisitCreate,
    *,
    household_id: str,
    region_code: str,
    observed_by: str,
    observed_on: date,
    origin: str,
    notes: str | None,
) -> None:
    """What a verification or a visit saw of guarantees, income and schooling goes back to
    registry as a finding; nothing when it saw none of these."""
    if not (observed.guarantees or observed.income or observed.schooling):
        return
    finding = FindingObserved(
        household_id=household_id,
        region_code=region_code,
        observed_by=observed_by,
        observed_on=observed_on,
        origin=origin,
        guarantees={str(k): str(v) for k, v in observed.guarantees.items()},
        income=IncomeFinding(**observed.income.model_dump()) if observed.income else None,
        schooling=observed.schooling,
        notes=notes,
    )
    await outbox.publish(session, make_assistance_event(finding, household_id))


Claimable = TypeVar("Claimable", bound=AssistanceBase)  # a table with `id`


async def claim_once(
    session: AsyncSession,
    model: type[Claimable],
    stamp: str,
    *due: ColumnElement[bool],
    at: datetime | None = None,
    again_after: timedelta | None = None,
) -> list[Claimable]:
    """Stamp `stamp` on up to 1,000 rows that match `due` and carry no stamp yet (or, with
    `again_after`, one older than that), and return them. Rows are claimed FOR UPDATE SKIP
    LOCKED and stamped by a conditional UPDATE, so replicas running the same job at once
    never take the same row: each event leaves once per round."""
    table = model.__table__  # type: ignore[attr-defined]
    now = at or utcnow()
    unstamped: ColumnElement[bool] = table.c[stamp].is_(None)
    if again_after is not None:
        unstamped = or_(unstamped, table.c[stamp] <= now - again_after)
    claimed = (
        select(table.c.id)
        .where(*due, unstamped)
        .limit(1000)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(model)
        .where(table.c.id.in_(claimed), unstamped)
        .values({stamp: now})
        .returning(model)
    )
    return list(rows.scalars())
