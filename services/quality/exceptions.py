"""Accepted exceptions (例外): county staff mark a finding whose data is right as it is."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from backstop.auth import Level, Principal
from backstop.db import SessionFactory, unit_of_work
from backstop.errors import Problem
from services.quality import models as m

log = logging.getLogger("backstop.quality")


async def accept_exception(
    sessions: SessionFactory,
    *,
    finding_id: int,
    accepted_by: str,
    reason: str,
    principal: Principal,
) -> dict[str, Any]:
    """County staff mark an open finding as an accepted exception (例外): it stays out of
    the lists of open findings, through later checks and sweeps, with who and why."""
    principal.require_level(Level.COUNTY, "accepting a data-quality exception")
    async with unit_of_work(sessions) as session:
        f = m.findings
        row = (
            await session.execute(select(f).where(f.c.id == finding_id).with_for_update())
        ).one_or_none()
        if row is None or not principal.can_see(row.region_code):
            raise Problem(404, f"no finding {finding_id}")
        if row.status != "open":
            raise Problem(
                409, f"finding {finding_id} is {row.status}; only an open one can be accepted"
            )
        updated = (
            await session.execute(
                update(f)
                .where(f.c.id == finding_id)
                .values(
                    status="accepted",
                    accepted_by=accepted_by,
                    accepted_client=principal.sub,
                    accepted_reason=reason,
                    accepted_at=datetime.now(UTC),
                )
                .returning(*f.c)
            )
        ).one()
        log.info("finding %s (%s) accepted as an exception", finding_id, row.rule_code)
        return dict(updated._mapping)
