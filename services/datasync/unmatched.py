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
from services.datasync.domain import SERVICE

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
    household (key = id_hash). The records are the stored `data` column, already in the
    contract's shape, as in `records.matched`."""
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
    return emitted
