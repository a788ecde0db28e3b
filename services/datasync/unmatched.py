"""Records of people not in the register (未建档立卡人员): one `records.unmatched` per
person per batch, so risk can find those over the warning line (seed 二(一)). Who the
person is stays here: the event carries the `id_hash`, never the ID number or the name."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox, tracing
from backstop.contracts.datasync import RecordsUnmatched
from backstop.events import CloudEvent
from backstop.logs import correlation_id
from services.datasync.domain import CORRECTION, SERVICE, VOID

RECORDS_UNMATCHED: str = RecordsUnmatched.__event_type__  # type: ignore[attr-defined]
EVENTS_PER_WRITE = 1000


async def emit_unmatched(
    session: AsyncSession,
    conn: asyncpg.Connection,
    *,
    source: str,
    batch_id: str,
    period: str,
    correlation: str,
) -> int:
    """One `records.unmatched` per person for the records of this batch that matched no
    household (key = id_hash), then one per person and period for the batch's changes to
    such records. The records are the stored `data` column, already in the contract's
    shape, as in `records.matched`."""
    template = CloudEvent(
        source=f"/backstop/{SERVICE}",
        type=RECORDS_UNMATCHED,
        correlationid=correlation_id.get() or correlation,
        traceparent=tracing.current_traceparent(),
    )
    emitted = 0
    cursor = conn.cursor(
        "SELECT id_hash, '[' || string_agg(data::text, ',' ORDER BY idx) || ']'"
        " FROM feed_records WHERE source = $1 AND batch_id = $2 AND household_id IS NULL"
        " AND voided_at IS NULL"
        " GROUP BY id_hash ORDER BY id_hash",
        source,
        batch_id,
        prefetch=EVENTS_PER_WRITE,
    )
    pending: list[tuple[str, dict[str, Any]]] = []
    async for person, records in cursor:
        data = {"id_hash": person, "source": source, "batch_id": batch_id, "period": period}
        pending.append((person, data | {"records": orjson.Fragment(records)}))
        if len(pending) >= EVENTS_PER_WRITE:
            emitted += await outbox.publish_bulk(session, template, pending)
            pending = []
    emitted += await outbox.publish_bulk(session, template, pending)
    return emitted + await outbox.publish_bulk(
        session, template, await _changes(conn, source=source, batch_id=batch_id)
    )


async def _changes(
    conn: asyncpg.Connection, *, source: str, batch_id: str
) -> list[tuple[str, dict[str, Any]]]:
    """The corrections (更正) and voids (作废) this batch made to records of people still
    in no household, per person and period of the records: corrections in `records` at
    their new revision, voids in `voided`, so the person's sums never count a corrected
    record twice nor a voided one at all. A record changed twice leaves as last changed."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (v.record_id) f.id_hash, f.period, v.record_id, v.revision,"
        " v.action, v.data::text AS data"
        " FROM feed_record_versions v JOIN feed_records f"
        " ON f.source = v.source AND f.record_id = v.record_id"
        " WHERE v.source = $1 AND v.batch_id = $2 AND v.action = ANY($3::text[])"
        " AND f.household_id IS NULL ORDER BY v.record_id, v.revision DESC",
        source,
        batch_id,
        [CORRECTION, VOID],
    )
    groups: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for r in rows:
        group = groups.setdefault((r["id_hash"], r["period"]), {"records": [], "voided": []})
        if r["action"] == VOID:
            group["voided"].append(
                {
                    "source": source,
                    "record_id": r["record_id"],
                    "id_hash": r["id_hash"],
                    "revision": r["revision"],
                }
            )
        else:
            group["records"].append(orjson.Fragment(r["data"]))
    head = {"source": source, "batch_id": batch_id}
    return [
        (person, {"id_hash": person, **head, "period": period, **group})
        for (person, period), group in sorted(groups.items())
    ]
