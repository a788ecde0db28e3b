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

from backstop import outbox
from backstop.auth import Level, Principal
from backstop.contracts import quality as quality_contract
from backstop.db import SessionFactory, unit_of_work
from backstop.events import make_event
from services.quality import domain, households
from services.quality import models as m
from services.quality.checks import check_rows, publish_new_errors
from services.quality.common import COUNTY_TZ, SERVICE, county_today

log = logging.getLogger("backstop.quality")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # before any finding: "since ever"


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
            rows = await households.load(
                session,
                "WHERE h.household_id > :cursor AND h.region_code LIKE :prefix "
                "ORDER BY h.household_id LIMIT :n FOR UPDATE OF h",
                {"cursor": sweep.cursor, "prefix": sweep.region_prefix + "%", "n": chunk},
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
                values.update(await finish(session, sweep, sweep.households + result.households))
            if rows:
                values["cursor"] = rows[-1].household_id
            await session.execute(update(s).where(s.c.id == sweep.id).values(**values))
            if len(rows) < chunk:
                log.info("sweep %s done", sweep.id)


async def finish(session: AsyncSession, sweep: Any, checked: int) -> dict[str, Any]:
    """A sweep's end: its summary leaves through the outbox (the quarterly report's 数据质量
    section) in the last chunk's transaction; returns what the sweep's row keeps."""
    finished_at = datetime.now(UTC)
    s = m.sweeps.c
    previous = (
        await session.execute(
            select(s.id, s.finished_at)
            .where(s.status == "done", s.region_prefix == sweep.region_prefix, s.id != sweep.id)
            .order_by(s.finished_at.desc())
            .limit(1)
        )
    ).one_or_none()
    counts = await sweep_counts(
        session, sweep.region_prefix, since=previous.finished_at if previous else None
    )
    summary = quality_contract.SweepCompleted(
        sweep_id=sweep.id,
        trigger=sweep.trigger,
        region_prefix=sweep.region_prefix,
        finished_at=finished_at,
        households=checked,
        ruleset_version=domain.RULESET_VERSION,
        previous_sweep_id=previous.id if previous else None,
        previous_finished_at=previous.finished_at if previous else None,
        categories=domain.CATEGORY_LABELS,
        counts=counts,
    )
    await outbox.publish(session, make_event(SERVICE, summary, subject=f"sweep/{sweep.id}"))
    return {"status": "done", "finished_at": finished_at, "counts": open_by_town(counts)}


async def sweep_counts(
    session: AsyncSession, region_prefix: str, *, since: datetime | None
) -> list[quality_contract.SweepCount]:
    """Findings by town × category × severity: open and accepted now, opened and closed
    since `since` (the previous sweep's end), and open at `since` (from the findings'
    history: an open finding is closed or accepted later, never reopened)."""
    rows = await session.execute(
        text(
            """
            SELECT town_code, category, severity,
              count(*) FILTER (WHERE status = 'open') AS open,
              count(*) FILTER (WHERE status = 'accepted') AS accepted,
              count(*) FILTER (WHERE opened_at > CAST(:since AS timestamptz)) AS opened,
              count(*) FILTER (WHERE closed_at > CAST(:since AS timestamptz)) AS closed,
              count(*) FILTER (
                WHERE opened_at <= CAST(:since AS timestamptz)
                  AND (closed_at IS NULL OR closed_at > CAST(:since AS timestamptz))
                  AND (accepted_at IS NULL OR accepted_at > CAST(:since AS timestamptz))
              ) AS previous_open
            FROM quality_findings WHERE region_code LIKE :prefix
            GROUP BY town_code, category, severity ORDER BY town_code, category, severity
            """
        ),
        {"since": since or EPOCH, "prefix": region_prefix + "%"},
    )
    return [
        quality_contract.SweepCount(
            town_code=r.town_code,
            category=r.category,
            severity=r.severity,
            open=r.open,
            accepted=r.accepted,
            opened=r.opened,
            closed=r.closed,
            previous_open=r.previous_open if since else None,
        )
        for r in rows
        # Old history alone (closed before the previous sweep) says nothing of this one.
        if r.open or r.accepted or r.opened or r.closed or (since and r.previous_open)
    ]


def open_by_town(counts: list[quality_contract.SweepCount]) -> dict[str, dict[str, int]]:
    """Open findings by town and category: {town_code: {category: n, "error": n}} (what the
    summary compares the findings open now with)."""
    by_town: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in counts:
        if c.open:
            by_town[c.town_code][c.category] += c.open
            if c.severity == "error":
                by_town[c.town_code]["error"] += c.open
    return {t: dict(n) for t, n in by_town.items()}
