"""People not in the register (未建档立卡人员): datasync's `records.unmatched` kept per
person (`id_hash`), their 12-month medical, disaster and school costs held against the
same warning lines as a household's (`domain.unregistered_factors`), and
`unregistered.flagged` emitted once a person reaches one, again only on new evidence.
assistance turns it into a 纳入建档立卡核查 check. Nothing here commits."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts import datasync as datasync_contract
from backstop.contracts.risk import FactorData, UnregisteredFlagged
from backstop.events import CloudEvent, make_event
from services.risk import models as m
from services.risk.domain import (
    FeedRecord,
    unflagged_evidence,
    unregistered_factors,
    window_start,
)
from services.risk.features import county_today
from services.risk.policies import current_policy
from services.risk.scoring import SERVICE

log = logging.getLogger("backstop.risk")

RIGID_SOURCES = ("medical", "disaster", "education")  # 因病、因灾、因学
_CHANGED = ("id_hash", "occurred_on", "amount", "batch_id", "event_id", "revision", "voided")
RECORDS_UNMATCHED: str = datasync_contract.RecordsUnmatched.__event_type__  # type: ignore[attr-defined]


def _cost_row(
    event: CloudEvent, data: datasync_contract.RecordsUnmatched, rec: Any
) -> dict[str, Any] | None:
    """A medical, disaster or school cost as kept; other records (civil affairs) count
    for no warning line of a person and are not kept."""
    if isinstance(rec, datasync_contract.MedicalRecordData):
        on, amount = rec.settled_on, rec.out_of_pocket
    elif isinstance(rec, datasync_contract.DisasterRecordData):
        on, amount = rec.occurred_on, rec.loss_amount
    elif isinstance(rec, datasync_contract.EducationRecordData):
        on, amount = _period_start(data.period), rec.out_of_pocket  # no date of its own
    elif isinstance(rec, datasync_contract.VoidedRecord) and rec.source in RIGID_SOURCES:
        on, amount = _period_start(data.period), 0.0  # a tombstone: no sum reads it
    else:
        return None
    return {
        "source": rec.source,
        "record_id": rec.record_id,
        "id_hash": data.id_hash,
        "occurred_on": on,
        "amount": amount,
        "batch_id": data.batch_id,
        "event_id": event.id,
        "revision": rec.revision,
        "voided": isinstance(rec, datasync_contract.VoidedRecord),
    }


def _period_start(period: str) -> date:
    year, month = period.split("-")[:2]
    return date(int(year), int(month), 1)


async def on_records_unmatched(session: AsyncSession, event: CloudEvent) -> None:
    """Keep the person's costs (per (source, record_id), at the newest revision: a
    correction replaces, a void leaves a tombstone), then flag the person when the
    12-month costs reach a warning line with a record not flagged before."""
    data = event.payload()
    assert isinstance(data, datasync_contract.RecordsUnmatched)
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in [*data.records, *data.voided]:
        if (row := _cost_row(event, data, rec)) is not None:
            datasync_contract.keep_newest(newest, row)
    if not newest:
        return
    table, people = m.unregistered_records, m.unregistered_people
    stmt = pg_insert(table)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.source, table.c.record_id],
            set_={c: stmt.excluded[c] for c in _CHANGED} | {"received_at": text("now()")},
            # Only a newer revision replaces a record; a voided one stays a tombstone.
            where=table.c.revision < stmt.excluded.revision,
        ),
        list(newest.values()),
    )
    if not data.records:
        return  # voids alone bring no new evidence
    # One decision per person at a time (the events of a person share a partition; this
    # also holds for a replay beside a live consumer).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:h, 0))"), {"h": data.id_hash}
    )
    as_of = county_today()
    kept = (
        await session.execute(
            table.select().where(
                table.c.id_hash == data.id_hash,
                table.c.occurred_on >= window_start(as_of),
                table.c.voided.is_(False),
            )
        )
    ).all()
    version, policy = await current_policy(session)
    factors = unregistered_factors(
        [FeedRecord(r.source, r.record_id, r.occurred_on, r.amount, r.id_hash) for r in kept],
        policy,
        as_of,
    )
    if not factors:
        return
    flagged = await session.scalar(
        people.select()
        .with_only_columns(people.c.flagged_sources)
        .where(people.c.id_hash == data.id_hash)
    )
    new = unflagged_evidence(factors, flagged or ())
    if not new:
        return
    sources = sorted({s for f in factors for s in f.sources})
    factor_data = [
        FactorData(code=f.code, points=f.points, evidence=f.evidence, sources=list(f.sources))
        for f in factors
    ]
    stmt = pg_insert(people).values(
        id_hash=data.id_hash,
        flagged_sources=sources,
        factors=[f.model_dump() for f in factor_data],
        policy_version=version,
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[people.c.id_hash],
            set_={
                "flagged_sources": stmt.excluded.flagged_sources,
                "factors": stmt.excluded.factors,
                "policy_version": stmt.excluded.policy_version,
                "flagged_at": text("now()"),
            },
        )
    )
    flagged_event = make_event(
        SERVICE,
        UnregisteredFlagged(
            id_hash=data.id_hash,
            factors=factor_data,
            new_evidence=new,
            assessed_at=datetime.now(UTC),
            policy_version=version,
        ),
        subject=data.id_hash,
        correlation_id=event.correlationid,
    )
    await outbox.publish(session, flagged_event)
    log.info("person not in the register flagged: %s", ", ".join(new))
