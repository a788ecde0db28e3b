"""Matching ID numbers to households: the id_hash index built from
`registry.households` snapshots, and the waiting records of people it gains.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox, tracing
from backstop.contracts.datasync import RecordsMatched
from backstop.contracts.registry import HouseholdEvent
from backstop.db import raw_connection
from backstop.events import CloudEvent
from backstop.logs import correlation_id
from services.datasync.domain import SERVICE

log = logging.getLogger("backstop.datasync")

RECORDS_MATCHED: str = RecordsMatched.__event_type__  # type: ignore[attr-defined]
EVENTS_PER_WRITE = 1000
# Batches match records against the id_hash index under this advisory lock, shared; the
# index is updated under it, exclusive. Without it a person indexed while a batch was in
# flight was seen by neither side: not by the batch's lookup (the snapshot was not yet
# committed), not by the snapshot's matching of waiting records (the batch was not yet).
MATCHING_LOCK = 0x6461746173796E63  # "datasync"


def records_matched_event(
    *,
    household_id: str,
    source: str,
    batch_id: str,
    period: str,
    records: list[dict[str, Any]],
    correlation: str | None,
) -> CloudEvent:
    """`records.matched` for one household and batch, in the kernel's envelope. The
    records are the `data` column written from a validated record, so they already have
    the contract's shape (tests check `event.payload()`); they are not validated again
    one by one: a batch can hold 200k."""
    return CloudEvent.model_construct(
        specversion="1.0",
        id=str(uuid.uuid4()),
        time=datetime.now(UTC),
        datacontenttype="application/json",
        source=f"/backstop/{SERVICE}",
        type=RECORDS_MATCHED,
        subject=household_id,
        data={
            "household_id": household_id,
            "source": source,
            "batch_id": batch_id,
            "period": period,
            "records": records,
        },
        correlationid=correlation,
    )


async def apply_household_snapshots(session: AsyncSession, events: Sequence[CloudEvent]) -> None:
    """Replace each household's index rows from its newest snapshot in `events`, then
    match the waiting records of the people it gained and emit them.

    Rows of the household whose hash left the snapshot are deleted, the others upserted,
    so a member moving between households ends up right whatever order the two
    households' events arrive in; an older snapshot than one already applied is skipped.
    """
    newest: dict[str, tuple[int, datetime, list[str], str | None, str]] = {}
    for event in events:
        payload = event.payload()
        if not isinstance(payload, HouseholdEvent):
            continue
        snapshot = payload.household
        known = newest.get(snapshot.household_id)
        if known is None or snapshot.version >= known[0]:
            newest[snapshot.household_id] = (
                snapshot.version,
                event.time,
                sorted({m.id_hash for m in snapshot.members}),
                event.correlationid or event.id,
                snapshot.region_code,
            )
    if not newest:
        return
    conn = await raw_connection(session)
    # Waits for the batches in flight, so that their records are seen below.
    await conn.execute(f"SELECT pg_advisory_xact_lock({MATCHING_LOCK})")
    ids = sorted(newest)
    stored = {
        r["household_id"]: r["version"]
        for r in await conn.fetch(
            "SELECT household_id, version FROM household_versions"
            " WHERE household_id = ANY($1::text[]) FOR UPDATE",
            ids,
        )
    }
    fresh = [h for h in ids if newest[h][0] >= stored.get(h, -1)]
    if not fresh:
        return
    await conn.execute(
        "INSERT INTO household_versions (household_id, version, region_code)"
        " SELECT * FROM unnest($1::text[], $2::int[], $3::text[])"
        " ON CONFLICT (household_id) DO UPDATE SET version = EXCLUDED.version,"
        " region_code = EXCLUDED.region_code, applied_at = now()",
        fresh,
        [newest[h][0] for h in fresh],
        [newest[h][4] for h in fresh],
    )
    member_households = [h for h in fresh for _ in newest[h][2]]
    member_hashes = [x for h in fresh for x in newest[h][2]]
    member_since = [newest[h][1] for h in fresh for _ in newest[h][2]]
    await conn.execute(
        "DELETE FROM person_index p WHERE p.household_id = ANY($1::text[]) AND NOT EXISTS ("
        " SELECT 1 FROM unnest($2::text[], $3::text[]) AS s(household_id, id_hash)"
        " WHERE s.household_id = p.household_id AND s.id_hash = p.id_hash)",
        fresh,
        member_households,
        member_hashes,
    )
    if not member_hashes:
        return
    gained = await conn.fetch(
        "INSERT INTO person_index (household_id, id_hash, since)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])"
        " ON CONFLICT (household_id, id_hash)"
        " DO UPDATE SET since = GREATEST(person_index.since, EXCLUDED.since)"
        " RETURNING id_hash, household_id, (xmax = 0) AS inserted",
        member_households,
        member_hashes,
        member_since,
    )
    new_hashes = sorted({r["id_hash"] for r in gained if r["inserted"]})
    if new_hashes:
        await _match_waiting(session, conn, new_hashes, {h: newest[h][3] for h in fresh})


async def _match_waiting(
    session: AsyncSession,
    conn: asyncpg.Connection,
    id_hashes: list[str],
    correlations: dict[str, str | None],
) -> None:
    matched = await conn.fetch(
        "UPDATE feed_records f SET household_id = m.household_id, matched_at = now()"
        " FROM (SELECT DISTINCT ON (id_hash) id_hash, household_id FROM person_index"
        "       WHERE id_hash = ANY($1::text[]) ORDER BY id_hash, since DESC) m"
        " WHERE f.household_id IS NULL AND f.id_hash = m.id_hash AND f.voided_at IS NULL"
        " RETURNING f.household_id, f.source, f.batch_id, f.period, f.idx, f.data::text AS data",
        id_hashes,
    )
    if not matched:
        return
    groups: dict[tuple[str, str, str, str], list[tuple[int, str]]] = defaultdict(list)
    for r in matched:
        groups[(r["household_id"], r["source"], r["batch_id"], r["period"])].append(
            (r["idx"], r["data"])
        )
    events = [
        records_matched_event(
            household_id=household_id,
            source=source,
            batch_id=batch_id,
            period=period,
            records=[orjson.loads(d) for _, d in sorted(items)],
            correlation=correlations.get(household_id),
        )
        for (household_id, source, batch_id, period), items in sorted(groups.items())
    ]
    await outbox.publish_many(session, events)
    log.info("matched %d waiting records for %d households", len(matched), len(events))


def batch_template(event_type: str, correlation: str) -> CloudEvent:
    """The envelope of a batch's bulk events (`outbox.publish_bulk`): the request's
    correlation id, else `correlation`."""
    return CloudEvent(
        source=f"/backstop/{SERVICE}",
        type=event_type,
        correlationid=correlation_id.get() or correlation,
        traceparent=tracing.current_traceparent(),
    )


def batch_records_item(
    household_id: str, records: str | bytes, head: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The subject and data of one household's `records.matched` of a batch: `records` is
    the JSON array of its records' `data` in batch order, as text."""
    return household_id, {"household_id": household_id, **head, "records": orjson.Fragment(records)}


async def publish_batch_records(
    session: AsyncSession,
    conn: asyncpg.Connection,
    *,
    source: str,
    batch_id: str,
    period: str,
    correlation: str,
) -> int:
    """One `records.matched` per household for the records this batch matched.

    The records are the `data` column, written from validated records, so they already
    have the contract's shape (tests check `event.payload()`); they go into the events as
    the JSON text PostgreSQL aggregates, not parsed and validated again one by one: a
    batch can hold 200k."""
    template = batch_template(RECORDS_MATCHED, correlation)
    emitted = 0
    cursor = conn.cursor(
        "SELECT household_id, '[' || string_agg(data::text, ',' ORDER BY idx) || ']'"
        " FROM feed_records WHERE source = $1 AND batch_id = $2 AND household_id IS NOT NULL"
        " AND voided_at IS NULL GROUP BY household_id ORDER BY household_id",
        source,
        batch_id,
        prefetch=EVENTS_PER_WRITE,
    )
    head = {"source": source, "batch_id": batch_id, "period": period}
    pending: list[tuple[str, dict[str, Any]]] = []
    async for household_id, records in cursor:
        pending.append(batch_records_item(household_id, records, head))
        if len(pending) >= EVENTS_PER_WRITE:
            emitted += await outbox.publish_bulk(session, template, pending)
            pending = []
    return emitted + await outbox.publish_bulk(session, template, pending)
