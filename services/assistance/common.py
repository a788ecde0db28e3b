"""What every use case of assistance shares: its events, the policy (帮扶政策参数) and the
read model of registry's households, the finding sent back to registry, and the
claim-once stamp of the overdue jobs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.contracts.assistance import FindingObserved, IncomeFinding
from backstop.contracts.registry import HouseholdEvent
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import invalid
from backstop.events import CloudEvent, make_event
from backstop.logs import correlation_id
from services.assistance import domain
from services.assistance.models import (
    Clue,
    Household,
    PolicyVersion,
    SupervisionIssue,
    Task,
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


async def publish_finding(
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
