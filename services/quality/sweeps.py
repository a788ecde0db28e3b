"""Sweeps: every household (or a region's) re-checked on demand and nightly, chunk by
chunk, each chunk in its own transaction, resuming at its cursor."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.auth import Level, Principal
from backstop.db import SessionFactory, unit_of_work
from services.quality import domain
from services.quality import models as m
from services.quality.checks import check_rows, publish_new_errors
from services.quality.common import COUNTY_TZ, county_today
from services.quality.households import HOUSEHOLD_SELECT

log = logging.getLogger("backstop.quality")


async def request_sweep(
    sessions: SessionFactory, *, region_prefix: str, principal: Principal
) -> dict[str, Any]:
    principal.require_level(Level.COUNTY, "a full sweep")
    if region_prefix:
        principal.require_region(region_prefix)
    async with unit_of_work(sessions) as session:
        row = (
            await session.execute(
                insert(m.sweeps)
                .values(
                    trigger="manual",
                    run_on=county_today(),
                    region_prefix=region_prefix,
                    requested_by=principal.sub,
                    status="pending",
                )
                .returning(*m.sweeps.c)
            )
        ).one()
        return dict(row._mapping)


async def schedule_nightly(
    sessions: SessionFactory, *, hour: int, now: datetime | None = None
) -> bool:
    """Queue tonight's sweep once the county's clock has passed `hour` (once a day, however
    many replicas ask). Rules that depend on the date (overdue, a month at risk) change
    with no event, so the nightly sweep is what notices them."""
    local = (now or datetime.now(UTC)).astimezone(COUNTY_TZ)
    if local.hour < hour:
        return False
    async with unit_of_work(sessions) as session:
        stmt = (
            pg_insert(m.sweeps)
            .values(
                trigger="nightly",
                run_on=local.date(),
                region_prefix="",
                requested_by="nightly",
                status="pending",
            )
            .on_conflict_do_nothing(
                index_elements=[m.sweeps.c.run_on], index_where=text("trigger = 'nightly'")
            )
            .returning(m.sweeps.c.id)
        )
        return (await session.execute(stmt)).first() is not None


async def run_sweeps(
    sessions: SessionFactory, *, chunk: int = 2000, thresholds: domain.Thresholds | None = None
) -> int:
    """Work through pending sweeps, one chunk per transaction; returns households checked.
    A crash resumes at the cursor; two replicas never work on one sweep at once."""
    checked = 0
    while True:
        async with unit_of_work(sessions) as session:
            s = m.sweeps
            sweep = (
                await session.execute(
                    select(s)
                    .where(s.c.status.in_(("pending", "running")))
                    .order_by(s.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).one_or_none()
            if sweep is None:
                return checked
            rows = list(
                await session.execute(
                    text(
                        f"{HOUSEHOLD_SELECT} WHERE h.household_id > :cursor "
                        "AND h.region_code LIKE :prefix "
                        "ORDER BY h.household_id LIMIT :n FOR UPDATE OF h"
                    ),
                    {"cursor": sweep.cursor, "prefix": sweep.region_prefix + "%", "n": chunk},
                )
            )
            result = await check_rows(session, rows, today=county_today(), thresholds=thresholds)
            checked += result.households
            await publish_new_errors(session, result)
            values: dict[str, Any] = {
                "households": s.c.households + result.households,
                "opened": s.c.opened + result.opened,
                "closed": s.c.closed + result.closed,
            }
            if sweep.status == "pending":
                values["status"], values["started_at"] = "running", func.now()
            if len(rows) < chunk:
                values.update(
                    status="done",
                    finished_at=func.now(),
                    counts=await open_counts(session, sweep.region_prefix),
                )
            if rows:
                values["cursor"] = rows[-1].household_id
            await session.execute(update(s).where(s.c.id == sweep.id).values(**values))
            if len(rows) < chunk:
                log.info("sweep %s done", sweep.id)


async def open_counts(session: AsyncSession, region_prefix: str = "") -> dict[str, dict[str, int]]:
    """Open findings by town and category: {town_code: {category: n, "error": n}}."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in await session.execute(
        text(
            "SELECT town_code, category, severity, count(*) AS n FROM quality_findings "
            "WHERE status = 'open' AND region_code LIKE :prefix "
            "GROUP BY town_code, category, severity"
        ),
        {"prefix": region_prefix + "%"},
    ):
        counts[r.town_code][r.category] += r.n
        if r.severity == "error":
            counts[r.town_code]["error"] += r.n
    return {t: dict(c) for t, c in counts.items()}
