"""Read side of datasync: batches, unmatched records, raw records and deliveries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.idnumber import mask_id
from backstop.pagination import decode_cursor, encode_cursor
from services.datasync.domain import DEPARTMENTS, SOURCES, CalendarRules, Period, delivery_status
from services.datasync.models import (
    BatchList,
    BatchPublic,
    Delivery,
    DeliveryList,
    ErrorList,
    RawRecord,
    RawRecordList,
    RecordError,
    UnmatchedList,
    UnmatchedRecord,
)

_BATCH_COLUMNS = (
    "source, batch_id, period, status, format, filename, submitted_by, received_at,"
    " summary::text AS summary"
)


def _batch(row: Any) -> BatchPublic:
    summary = orjson.loads(row.summary) if row.summary else {}
    return BatchPublic.model_validate(
        {
            **summary,
            "batch_id": row.batch_id,
            "source": row.source,
            "period": row.period,
            "format": row.format,
            "filename": row.filename,
            "submitted_by": row.submitted_by,
            "received_at": row.received_at,
            "status": row.status,
        }
    )


async def get_batch(*, session: AsyncSession, source: str, batch_id: str) -> BatchPublic | None:
    row = (
        await session.execute(
            text(f"SELECT {_BATCH_COLUMNS} FROM feed_batches WHERE source = :s AND batch_id = :b"),
            {"s": source, "b": batch_id},
        )
    ).first()
    return _batch(row) if row else None


async def list_batches(
    *, session: AsyncSession, source: str, period: str | None, limit: int, cursor: str | None
) -> BatchList:
    after = decode_cursor(cursor, datetime.fromisoformat, str)
    clauses = ["source = :s"]
    params: dict[str, Any] = {"s": source, "n": limit + 1}
    if period:
        clauses.append("period = :p")
        params["p"] = period
    if after:
        clauses.append("(received_at, batch_id) < (:t, :b)")
        params["t"], params["b"] = after
    rows = (
        await session.execute(
            text(
                f"SELECT {_BATCH_COLUMNS} FROM feed_batches WHERE {' AND '.join(clauses)}"
                " ORDER BY received_at DESC, batch_id DESC LIMIT :n"
            ),
            params,
        )
    ).all()
    items = [_batch(r) for r in rows[:limit]]
    more = len(rows) > limit
    return BatchList(
        items=items,
        next_cursor=encode_cursor(items[-1].received_at.isoformat(), items[-1].batch_id)
        if more
        else None,
    )


async def list_unmatched(
    *,
    session: AsyncSession,
    source: str | None,
    period: str | None,
    limit: int,
    cursor: str | None,
    pii: bool,
) -> UnmatchedList:
    after = decode_cursor(cursor, str, str)
    clauses = ["household_id IS NULL"]
    params: dict[str, Any] = {"n": limit + 1}
    if source:
        clauses.append("source = :s")
        params["s"] = source
    if period:
        clauses.append("period = :p")
        params["p"] = period
    if after:
        clauses.append("(source, record_id) > (:after_source, :after_record)")
        params["after_source"], params["after_record"] = after
    rows = (
        await session.execute(
            text(
                "SELECT source, record_id, batch_id, period, id_number, name, received_at"
                f" FROM feed_records WHERE {' AND '.join(clauses)}"
                " ORDER BY source, record_id LIMIT :n"
            ),
            params,
        )
    ).all()
    items = [
        UnmatchedRecord(
            source=r.source,
            record_id=r.record_id,
            batch_id=r.batch_id,
            period=r.period,
            id_number=r.id_number if pii else mask_id(r.id_number),
            name=r.name if pii else _mask_name(r.name),
            received_at=r.received_at,
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return UnmatchedList(
        items=items,
        next_cursor=encode_cursor(items[-1].source, items[-1].record_id) if more else None,
    )


def _mask_name(name: str | None) -> str | None:
    """张三丰 → 张**: enough for a data officer to recognise, not to identify."""
    return None if not name else name[0] + "*" * (len(name) - 1)


async def list_raw_records(
    *, session: AsyncSession, source: str, batch_id: str, limit: int, cursor: str | None
) -> RawRecordList:
    after = decode_cursor(cursor, int)
    start = after[0] if after else -1
    rows = (
        await session.execute(
            text(
                "SELECT * FROM ("
                " SELECT idx, record_id, 'accepted' AS outcome, id_number, household_id,"
                "   NULL AS field, NULL AS message, raw::text AS raw"
                "   FROM feed_records WHERE source = :s AND batch_id = :b AND idx > :after"
                " UNION ALL"
                " SELECT idx, record_id, 'rejected', NULL, NULL, field, message, raw::text"
                "   FROM rejected_records WHERE source = :s AND batch_id = :b AND idx > :after"
                ") r ORDER BY idx LIMIT :n"
            ),
            {"s": source, "b": batch_id, "after": start, "n": limit + 1},
        )
    ).all()
    items = [
        RawRecord(
            index=r.idx,
            record_id=r.record_id,
            outcome=r.outcome,
            id_number=r.id_number,
            household_id=r.household_id,
            field=r.field,
            message=r.message,
            raw=orjson.loads(r.raw) if r.raw else None,
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return RawRecordList(items=items, next_cursor=encode_cursor(items[-1].index) if more else None)


async def list_errors(
    *, session: AsyncSession, source: str, batch_id: str, limit: int, cursor: str | None
) -> ErrorList:
    """Every rejected record of a batch (the summary lists the first ones only)."""
    after = decode_cursor(cursor, int)
    rows = (
        await session.execute(
            text(
                "SELECT idx, record_id, field, message FROM rejected_records"
                " WHERE source = :s AND batch_id = :b AND idx > :after ORDER BY idx LIMIT :n"
            ),
            {"s": source, "b": batch_id, "after": after[0] if after else -1, "n": limit + 1},
        )
    ).all()
    items = [
        RecordError(index=r.idx, record_id=r.record_id, field=r.field, message=r.message)
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return ErrorList(items=items, next_cursor=encode_cursor(items[-1].index) if more else None)


async def deliveries(
    *, session: AsyncSession, period: Period, rules: CalendarRules, today: date, tz: Any
) -> DeliveryList:
    """Per source: delivered or not, due date, late or not, for one period."""
    rows = {
        r.source: r
        for r in (
            await session.execute(
                text(
                    "SELECT source, count(*) AS batches, coalesce(sum(accepted), 0) AS accepted,"
                    " min(received_at) AS first_at, max(received_at) AS last_at"
                    " FROM feed_batches WHERE period = :p GROUP BY source"
                ),
                {"p": str(period)},
            )
        ).all()
    }
    items = []
    for source in SOURCES:
        due = rules.due_on(source, period)
        row = rows.get(source)
        delivered = row is not None
        first_day = row.first_at.astimezone(tz).date() if row is not None else None
        in_time = None if first_day is None else (due is None or first_day <= due)
        status = delivery_status(due=due, delivered=delivered, today=today)
        items.append(
            Delivery(
                source=source,
                department=DEPARTMENTS[source],
                period=str(period),
                due_on=due,
                status=status,
                delivered=delivered,
                late=status == "late" or in_time is False,
                on_time=in_time,
                batches=row.batches if row is not None else 0,
                records_accepted=int(row.accepted) if row is not None else 0,
                first_received_at=row.first_at if row is not None else None,
                last_received_at=row.last_at if row is not None else None,
            )
        )
    return DeliveryList(period=str(period), items=items)
