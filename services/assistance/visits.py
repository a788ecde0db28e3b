"""走访: contacts with monitored and marginal households, and the contact compliance report."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from backstop import outbox
from backstop.auth import Principal
from backstop.contracts.assistance import VisitRecorded
from backstop.contracts.policy import (
    ALLEVIATED_TYPES,
    EDGE_TYPES,
    due_for_monthly_contact,
    responsible_contacts,
)
from backstop.db import SessionFactory, one_of, unit_of_work
from backstop.errors import invalid
from services.assistance import domain
from services.assistance.common import (
    household_in_region,
    load_policy,
    make_assistance_event,
    narrowed,
    publish_finding,
)
from services.assistance.models import Household, Visit, VisitCreate


async def record_visit(
    sessions: SessionFactory, *, body: VisitCreate, principal: Principal
) -> Visit:
    """Log a contact; what it observes flows back to registry as a finding."""
    async with unit_of_work(sessions) as session:
        household = await household_in_region(session, body.household_id, principal)
        today = domain.today()
        if body.visited_on > today:
            raise invalid(["body", "visited_on"], "a visit cannot be in the future")
        backdate = (await load_policy(session)).visit_backdate_days
        if body.visited_on < today - timedelta(days=backdate):
            raise invalid(
                ["body", "visited_on"],
                f"a visit may be logged at most {backdate} days after it happened",
            )
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
        recorded = VisitRecorded(
            visit_id=visit.id,
            household_id=household.household_id,
            region_code=household.region_code,
            channel=visit.channel,
            visited_on=visit.visited_on,
        )
        await outbox.publish(session, make_assistance_event(recorded, household.household_id))
        await publish_finding(
            session,
            body,
            household_id=household.household_id,
            region_code=household.region_code,
            observed_by=body.visitor,
            observed_on=body.visited_on,
            origin="visit",
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
    query = select(Household).where(principal.region_clause(col(Household.region_code)))
    query = narrowed(query, Household, region=region)
    due = await households_due_contact(session, query)
    visitors: dict[str, set[str]] = defaultdict(set)
    rows = await session.execute(
        select(col(Visit.household_id), col(Visit.visitor))
        .where(
            one_of(col(Visit.household_id), (d.household_id for d in due)),
            col(Visit.visited_on) >= start,
            col(Visit.visited_on) < end,
        )
        .distinct()
    )
    for household_id, visitor in rows:
        visitors[household_id].add(visitor)
    return domain.compliance(period, due, visitors)


async def households_due_contact(
    session: AsyncSession, households: Select[Any]
) -> list[domain.ContactDue]:
    """Of `households`, those due a monthly contact (one rule, backstop.contracts.policy),
    with their contacts and who answers for the contact."""
    query = households.where(
        or_(
            col(Household.monitoring_status) == "monitored",
            col(Household.type).in_(sorted(ALLEVIATED_TYPES | EDGE_TYPES)),
        )
    )
    due = []
    for h in (await session.execute(query)).scalars():
        if not due_for_monthly_contact(
            household_type=h.type, monitoring_status=h.monitoring_status
        ):
            continue
        contacts = h.snapshot.get("contacts", [])
        named = [(c["name"], c["role"]) for c in contacts]
        due.append(
            domain.ContactDue(
                household_id=h.household_id,
                region_code=h.region_code,
                town_code=h.town_code,
                contacts=named,
                responsible=responsible_contacts(h.type, h.monitoring_status, named),
                phones=[c.get("phone", "") for c in contacts],
            )
        )
    return due
