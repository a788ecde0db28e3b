"""People not in the register (未建档立卡人员): datasync's `records.unmatched` kept per
person (`id_hash`), their 12-month medical, disaster and school costs held against the
same warning lines as a household's (`domain.unregistered_factors`), and
`unregistered.flagged` emitted once a person reaches one, again only on new evidence.
assistance turns it into a 纳入建档立卡核查 check. Nothing here commits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
    event: CloudEvent, data: datasync_contract.RecordsUnmatched, person: str, rec: Any
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
        "id_hash": person,
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


async def apply_unmatched(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """The consumer's batch of `records.unmatched`, in a handful of statements whatever
    its size: keep the people's costs (per (source, record_id), at the newest revision:
    a correction replaces, a void leaves a tombstone), then flag each person whose
    12-month costs reach a warning line with a record not flagged before."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    correlations: dict[str, str | None] = {}  # people with new records → their chain
    for event in events:
        data = event.payload()
        assert isinstance(data, datasync_contract.RecordsUnmatched)
        for seen in data.people:
            for rec in [*seen.records, *seen.voided]:
                if (row := _cost_row(event, data, seen.id_hash, rec)) is not None:
                    datasync_contract.keep_newest(newest, row)
                    if not row["voided"]:  # voids alone bring no new evidence
                        correlations[seen.id_hash] = event.correlationid
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
        # In key order: two batches upserting the same records never deadlock.
        [newest[key] for key in sorted(newest)],
    )
    if not correlations:
        return
    persons = sorted(correlations)
    # One decision per person at a time: a person's events share a partition, and this
    # also holds for a replay beside a live consumer (locks taken in one order).
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(h, 0))"
            " FROM unnest(CAST(:hs AS text[])) AS h ORDER BY h"
        ),
        {"hs": persons},
    )
    as_of = county_today()
    records: dict[str, list[FeedRecord]] = {}
    for r in await session.execute(
        table.select().where(
            table.c.id_hash.in_(persons),
            table.c.occurred_on >= window_start(as_of),
            table.c.voided.is_(False),
        )
    ):
        records.setdefault(r.id_hash, []).append(
            FeedRecord(r.source, r.record_id, r.occurred_on, r.amount, r.id_hash)
        )
    known = await session.execute(
        people.select()
        .with_only_columns(people.c.id_hash, people.c.flagged_sources)
        .where(people.c.id_hash.in_(persons))
    )
    flagged: dict[str, list[str]] = dict(known.tuples().all())
    version, policy = await current_policy(session)
    now = datetime.now(UTC)
    rows, flags = [], []
    for person in persons:
        factors = unregistered_factors(records.get(person, ()), policy, as_of)
        new = unflagged_evidence(factors, flagged.get(person) or ())
        if not new:
            continue
        factor_data = [
            FactorData(code=f.code, points=f.points, evidence=f.evidence, sources=list(f.sources))
            for f in factors
        ]
        rows.append(
            {
                "id_hash": person,
                "flagged_sources": sorted({s for f in factors for s in f.sources}),
                "factors": [f.model_dump() for f in factor_data],
                "policy_version": version,
            }
        )
        payload = UnregisteredFlagged(
            id_hash=person,
            factors=factor_data,
            new_evidence=new,
            assessed_at=now,
            policy_version=version,
        )
        flags.append(
            make_event(SERVICE, payload, subject=person, correlation_id=correlations[person])
        )
    if not rows:
        return
    upsert = pg_insert(people)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=[people.c.id_hash],
            set_={
                "flagged_sources": upsert.excluded.flagged_sources,
                "factors": upsert.excluded.factors,
                "policy_version": upsert.excluded.policy_version,
                "flagged_at": text("now()"),
            },
        ),
        rows,
    )
    await outbox.publish_many(session, flags)
    log.info("%d people not in the register flagged", len(flags))
