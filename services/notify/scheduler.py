"""The scheduler: fires the schedules stored in the database (Asia/Shanghai).

Exactly once with any number of replicas: each schedule row is locked with
`FOR UPDATE SKIP LOCKED`, the occurrence is claimed by inserting its unique key, and the
reminders it creates are de-duplicated by key — all in one transaction. A replica that
was down finds the current window still open when it returns and fires it then, once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from services.notify import domain
from services.notify.config import NotifySettings
from services.notify.models import HOUSEHOLDS, OCCURRENCES, SCHEDULES, SchedulePatch, utcnow
from services.notify.reminders import Draft, create_reminders

log = logging.getLogger("backstop.notify.scheduler")


def rule_of(row: object) -> domain.ScheduleRule:
    return domain.ScheduleRule(
        kind=row.kind,  # type: ignore[attr-defined]
        source=row.source,  # type: ignore[attr-defined]
        months=tuple(row.months),  # type: ignore[attr-defined]
        due_day=row.due_day,  # type: ignore[attr-defined]
        lead_days=row.lead_days,  # type: ignore[attr-defined]
        send_hour=row.send_hour,  # type: ignore[attr-defined]
    )


async def run_schedules(
    sessions: SessionFactory,
    settings: NotifySettings,
    *,
    worker: str,
    now: datetime | None = None,
) -> list[str]:
    """Fire every schedule whose current window is open and not yet claimed; returns
    the occurrence keys this call fired."""
    now = now or utcnow()
    fired: list[str] = []
    async with unit_of_work(sessions) as session:
        schedules = (
            await session.execute(
                select(SCHEDULES)
                .where(SCHEDULES.c.enabled)
                .order_by(SCHEDULES.c.name)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in schedules:
            occurrence = domain.current_occurrence(row.name, rule_of(row), now)
            if occurrence is None:
                continue
            claimed = (
                await session.execute(
                    insert(OCCURRENCES)
                    .values(
                        key=occurrence.key,
                        schedule=row.name,
                        fire_at=occurrence.fire_at,
                        claimed_by=worker,
                        reminders=0,
                    )
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(OCCURRENCES.c.key)
                )
            ).first()
            if claimed is None:
                continue
            drafts = await _drafts(session, settings, row, occurrence)
            # `now` picks the occurrence; the reminders are due from the real clock.
            created = await create_reminders(session, drafts)
            await session.execute(
                update(OCCURRENCES)
                .where(OCCURRENCES.c.key == occurrence.key)
                .values(reminders=created)
            )
            await session.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.name == row.name)
                .values(last_occurrence=occurrence.key, last_fired_at=now)
            )
            log.info("schedule %s fired: %d reminders", occurrence.key, created)
            fired.append(occurrence.key)
    return fired


async def _drafts(
    session: AsyncSession,
    settings: NotifySettings,
    schedule: object,
    occurrence: domain.Occurrence,
) -> list[Draft]:
    kind = schedule.kind  # type: ignore[attr-defined]
    if kind == "monthly_contacts":
        rows = (await session.execute(select(HOUSEHOLDS))).all()
        households = [
            domain.HouseholdView(
                household_id=r.household_id,
                region_code=r.region_code,
                type=r.type,
                monitoring_status=r.monitoring_status,
                household_number=r.household_number,
                contacts=tuple(
                    domain.ContactView(
                        role=str(c.get("role", "")),
                        name=str(c.get("name", "")),
                        phone=str(c.get("phone", "")),
                    )
                    for c in r.contacts
                ),
            )
            for r in rows
        ]
        month = f"{occurrence.period[:4]}年{int(occurrence.period[5:])}月"
        escalate_at = utcnow() + timedelta(seconds=settings.escalation_delay_s)
        unreachable = [
            Draft(
                dedup_key=f"{occurrence.key}:unreachable:{who}",
                kind="contacts_escalated" if escalated else "contacts_missing",
                recipient=who,
                region_code=town.town_code,
                message=domain.unreachable_message(town, month, escalated=escalated),
                ref=occurrence.key,
                not_before=escalate_at if escalated else None,
            )
            for town in domain.unreachable_households(households)
            for escalated, who in (
                (False, domain.town_office_key(town.town_code)),
                (True, domain.town_leader_key(town.town_code)),
            )
        ]
        return unreachable + [
            Draft(
                dedup_key=f"{occurrence.key}:{contact.phone}",
                kind="monthly_contacts",
                recipient=domain.contact_key(contact.phone),
                region_code=domain.common_prefix(h.region_code for h in contact.households),
                message=domain.monthly_contacts_message(contact, month),
                ref=occurrence.key,
                fallback=(contact.name, "sms", contact.phone),
            )
            for contact in domain.monthly_contact_lists(households)
        ]
    if kind == "feed_due":
        source = schedule.source or ""  # type: ignore[attr-defined]
        return [
            Draft(
                dedup_key=f"{occurrence.key}:department",
                kind="feed_due",
                recipient=domain.department_key(source),
                region_code=settings.county_code,
                message=domain.feed_due(source=source, due_on=occurrence.due_on),
                ref=occurrence.key,
            )
        ]
    raise ValueError(f"unknown schedule kind {kind!r}")


async def patch_schedule(
    sessions: SessionFactory, *, name: str, body: SchedulePatch
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    async with unit_of_work(sessions) as session:
        stmt = update(SCHEDULES).where(SCHEDULES.c.name == name).returning(*SCHEDULES.c)
        if changes:
            stmt = stmt.values(**changes)
        else:
            stmt = stmt.values(name=SCHEDULES.c.name)
        row = (await session.execute(stmt)).first()
        if row is None:
            raise Problem(404, f"no schedule named {name}")
    return dict(row._mapping)
