"""Records of people not in the register (未建档立卡人员): one `records.unmatched` per
person per batch, so risk can find those over the warning line (seed 二(一)). Who the
person is stays here: the event carries the `id_hash`, never the ID number or the name."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox, tracing
from backstop.events import CloudEvent
from backstop.logs import correlation_id
from services.datasync.domain import CORRECTION, SERVICE, VOID
from services.datasync.matching import RECORDS_UNMATCHED, publish_batch_records


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
    such records."""
    emitted = await publish_batch_records(
        session,
        conn,
        source=source,
        batch_id=batch_id,
        period=period,
        correlation=correlation,
        unmatched=True,
    )
    changes = await _changes(conn, source=source, batch_id=batch_id)
    if not changes:
        return emitted
    template = CloudEvent(
        source=f"/backstop/{SERVICE}",
        type=RECORDS_UNMATCHED,
        correlationid=correlation_id.get() or correlation,
        traceparent=tracing.current_traceparent(),
    )
    return emitted + await outbox.publish_bulk(session, template, changes)


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
