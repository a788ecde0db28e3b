"""Escalation (督办): towns leaving error-level findings open too long, once a county day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from backstop import outbox
from backstop.contracts import quality as quality_contract
from backstop.db import SessionFactory, unit_of_work
from backstop.events import make_event
from services.quality import models as m
from services.quality.common import COUNTY_TZ, SERVICE


async def escalate_overdue(
    sessions: SessionFactory, *, days: int, hour: int = 9, now: datetime | None = None
) -> int:
    """Once a county day, after `hour` (office hours): for each town with error-level
    findings open more than `days`, an event notify escalates (督办). Returns the towns
    escalated."""
    moment = now or datetime.now(UTC)
    if moment.astimezone(COUNTY_TZ).hour < hour:
        return 0
    today = moment.astimezone(COUNTY_TZ).date()
    async with unit_of_work(sessions) as session:
        claimed = await session.execute(
            pg_insert(m.escalations)
            .values(run_on=today)
            .on_conflict_do_nothing()
            .returning(m.escalations.c.run_on)
        )
        if claimed.first() is None:
            return 0  # another replica, or an earlier run today
        rows = list(
            await session.execute(
                text(
                    "SELECT town_code, count(*) AS n, min(opened_at) AS oldest "
                    "FROM quality_findings WHERE status = 'open' AND severity = 'error' "
                    "AND opened_at < :before GROUP BY town_code ORDER BY town_code"
                ),
                {"before": moment - timedelta(days=days)},
            )
        )
        await outbox.publish_many(
            session,
            [
                make_event(
                    SERVICE,
                    quality_contract.ErrorFindingsOverdue(
                        town_code=r.town_code,
                        count=r.n,
                        days=days,
                        oldest_opened_on=r.oldest.astimezone(COUNTY_TZ).date(),
                    ),
                    subject=r.town_code,
                )
                for r in rows
            ],
        )
        return len(rows)
