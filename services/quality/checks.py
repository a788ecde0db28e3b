"""Checking households: run the catalogue over them and move each finding along its
lifecycle (opened when a rule fires, closed when it no longer does; an accepted exception
is left alone), and tell the towns of new error-level findings."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import quality as quality_contract
from backstop.events import make_event
from backstop.logs import correlation_id
from services.quality import domain, households
from services.quality import models as m
from services.quality.common import SERVICE, any_of, ids_param


class Live(NamedTuple):
    """A household's open or accepted finding of one rule, as a check compares it."""

    id: int
    status: str
    message: str
    region_code: str


@dataclass
class CheckResult:
    households: int = 0
    opened: int = 0
    closed: int = 0
    # New error-level findings by town and rule: what notify reminds the town of.
    new_errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


async def publish_new_errors(session: AsyncSession, result: CheckResult) -> None:
    """One event per town with new error-level findings, in the check's transaction."""
    events = [
        make_event(
            SERVICE,
            quality_contract.ErrorFindingsOpened(
                town_code=town, opened=sum(rules.values()), rules=dict(sorted(rules.items()))
            ),
            subject=town,
            correlation_id=correlation_id.get(),
        )
        for town, rules in sorted(result.new_errors.items())
    ]
    await outbox.publish_many(session, events)


async def recheck(
    session: AsyncSession,
    ids: Sequence[str],
    *,
    today: date,
    thresholds: domain.Thresholds | None = None,
) -> CheckResult:
    """Run the catalogue over `ids` (locking them) and move their findings along."""
    if not ids:
        return CheckResult()
    rows = await households.load(
        session,
        f"WHERE {any_of('h.household_id')} ORDER BY h.household_id FOR UPDATE OF h",
        ids_param(ids),
    )
    return await check_rows(session, rows, today=today, thresholds=thresholds)


async def check_rows(
    session: AsyncSession,
    rows: Sequence[Any],
    *,
    today: date,
    thresholds: domain.Thresholds | None,
) -> CheckResult:
    """Run the catalogue over rows of `HOUSEHOLD_SELECT` (already locked) and write what
    changed: new findings, messages that moved, findings closed, findings that follow a
    household to another village."""
    limits = thresholds or domain.Thresholds()
    loaded = [(row, households.household_of(row)) for row in rows]
    ids = [r.household_id for r in rows]
    # The live findings as one JSON text: a sweep's chunk has thousands, and one
    # orjson.loads is much cheaper than as many result rows.
    live: dict[str, dict[str, Live]] = defaultdict(dict)
    found = await session.scalar(
        text(
            "SELECT json_agg(json_build_array(household_id, rule_code, id, status, message, "
            "region_code))::text FROM quality_findings "
            f"WHERE status IN ('open', 'accepted') AND {any_of('household_id')}"
        ),
        ids_param(ids),
    )
    for household_id, rule_code, *rest in orjson.loads(found) if found else ():
        live[household_id][rule_code] = Live(*rest)
    now = datetime.now(UTC)
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    to_close: list[int] = []
    moved: list[str] = []
    new_errors: dict[str, Counter[str]] = defaultdict(Counter)
    for row, household in loaded:
        fired = {f.rule.code: f for f in domain.check(household, today, limits)}
        hid = row.household_id
        known = live.get(hid, {})
        for code, finding in fired.items():
            current = known.get(code)
            message = finding.message
            if current is None:
                if finding.rule.severity == "error":
                    new_errors[row.town_code][code] += 1
                new.append(
                    {
                        "household_id": hid,
                        "region_code": row.region_code,
                        "town_code": row.town_code,
                        "rule_code": code,
                        "category": finding.rule.category,
                        "severity": finding.rule.severity,
                        "status": "open",
                        "message": message,
                        "evidence": finding.evidence,
                        "ruleset_version": domain.RULESET_VERSION,
                        "opened_at": now,
                    }
                )
            elif current.status == "open" and current.message != message:
                changed.append(
                    {"fid": current.id, "message": message, "evidence": finding.evidence}
                )
        for code, current in known.items():
            if current.region_code != row.region_code:
                moved.append(hid)
            if code not in fired and current.status == "open":
                to_close.append(current.id)
    if new:
        await session.execute(insert(m.findings), new)
    if changed:
        table = m.findings
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("fid"))
            .values(message=bindparam("message"), evidence=bindparam("evidence")),
            changed,
        )
    if to_close:
        await session.execute(
            update(m.findings)
            .where(m.findings.c.id.in_(to_close))
            .values(status="closed", closed_at=now)
        )
    if moved:  # the household moved to another village: its live findings follow it
        await session.execute(
            text(
                "UPDATE quality_findings f SET region_code = h.region_code, "
                "town_code = h.town_code FROM quality_households h "
                "WHERE f.household_id = h.household_id AND f.status IN ('open', 'accepted') "
                f"AND {any_of('f.household_id')}"
            ),
            ids_param(sorted(set(moved))),
        )
    return CheckResult(
        households=len(loaded), opened=len(new), closed=len(to_close), new_errors=new_errors
    )
