"""Read side of datasync: batches, unmatched records, raw records and deliveries."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import Text, and_, case, cast, literal, null, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from backstop.auth import Principal
from backstop.idnumber import mask_id
from backstop.pagination import decode_cursor, encode_cursor
from services.datasync.domain import (
    DEPARTMENTS,
    SOURCES,
    VOID,
    CalendarRules,
    Period,
    delivery_status,
)
from services.datasync.models import (
    BatchList,
    BatchPublic,
    Delivery,
    DeliveryList,
    ErrorList,
    FeedRecord,
    FeedRecordVersion,
    HouseholdVersion,
    RawRecord,
    RawRecordList,
    RecordError,
    RecordHistory,
    RecordVersionPublic,
    RejectedRecord,
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


def unmatched_sources(principal: Principal) -> list[str]:
    """The sources whose unmatched (and rejected) records `principal` may see: every
    source for a county-level principal with feeds:read, else the department's own
    (feeds:<source>). An unmatched record has no household, hence no region: only the
    department that sent it and the county may see it."""
    if principal.county_level and principal.has("feeds:read"):
        return list(SOURCES)
    return [s for s in SOURCES if principal.has(f"feeds:{s}")]


async def list_unmatched(
    *,
    session: AsyncSession,
    principal: Principal,
    source: str | None,
    period: str | None,
    limit: int,
    cursor: str | None,
    pii: bool,
    id_hash: str | None = None,
) -> UnmatchedList:
    after = decode_cursor(cursor, str, str)
    sources = [s for s in unmatched_sources(principal) if source is None or s == source]
    clauses = ["household_id IS NULL", "voided_at IS NULL", "source = ANY(:sources)"]
    params: dict[str, Any] = {"n": limit + 1, "sources": sources}
    if id_hash:  # one person's records: an enrolment check's reference (纳入建档立卡核查)
        clauses.append("id_hash = :h")
        params["h"] = id_hash
    if period:
        clauses.append("period = :p")
        params["p"] = period
    if after:
        clauses.append("(source, record_id) > (:after_source, :after_record)")
        params["after_source"], params["after_record"] = after
    rows = (
        await session.execute(
            text(
                "SELECT source, record_id, batch_id, period, id_number, id_hash, name,"
                " received_at"
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
            id_hash=r.id_hash,
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
    *,
    session: AsyncSession,
    principal: Principal,
    source: str,
    batch_id: str,
    limit: int,
    cursor: str | None,
) -> RawRecordList:
    """The batch's records as sent, accepted and rejected, in order. A matched record is
    listed only inside the caller's regions (its household's village); an unmatched or
    rejected one only to the department that sent it and to county-level principals."""
    after = decode_cursor(cursor, int)
    start = after[0] if after else -1
    own = source in unmatched_sources(principal)
    records, households = FeedRecord.__table__, HouseholdVersion.__table__  # type: ignore[attr-defined]
    seen = principal.region_clause(households.c.region_code)
    if principal.county_level:  # a household whose village is not known yet
        seen = or_(seen, households.c.region_code.is_(None))
    accepted = (
        select(
            records.c.idx,
            records.c.record_id,
            literal("accepted").label("outcome"),
            records.c.id_number,
            records.c.household_id,
            null().label("field"),
            null().label("message"),
            cast(records.c.raw, Text).label("raw"),
        )
        .select_from(
            records.outerjoin(households, households.c.household_id == records.c.household_id)
        )
        .where(
            records.c.source == source,
            records.c.batch_id == batch_id,
            records.c.idx > start,
            or_(records.c.household_id.is_(None), seen)
            if own
            else and_(records.c.household_id.is_not(None), seen),
        )
    )
    # The batch's corrections and voids (their records were first received before).
    versions = FeedRecordVersion.__table__  # type: ignore[attr-defined]
    changed = (
        select(
            versions.c.idx,
            versions.c.record_id,
            case((versions.c.action == VOID, "voided"), else_="corrected"),
            records.c.id_number,
            versions.c.household_id,
            null(),
            null(),
            cast(versions.c.raw, Text),
        )
        .select_from(
            versions.join(
                records,
                and_(
                    records.c.source == versions.c.source,
                    records.c.record_id == versions.c.record_id,
                ),
            ).outerjoin(households, households.c.household_id == versions.c.household_id)
        )
        .where(
            versions.c.source == source,
            versions.c.batch_id == batch_id,
            versions.c.action != "original",
            versions.c.idx > start,
            or_(versions.c.household_id.is_(None), seen)
            if own
            else and_(versions.c.household_id.is_not(None), seen),
        )
    )
    rejected = RejectedRecord.__table__  # type: ignore[attr-defined]
    parts = [accepted, changed]
    if own:
        parts.append(
            select(
                rejected.c.idx,
                rejected.c.record_id,
                literal("rejected"),
                null(),
                null(),
                rejected.c.field,
                rejected.c.message,
                cast(rejected.c.raw, Text),
            ).where(
                rejected.c.source == source,
                rejected.c.batch_id == batch_id,
                rejected.c.idx > start,
            )
        )
    both = union_all(*parts).subquery()
    rows = (await session.execute(select(both).order_by(both.c.idx).limit(limit + 1))).all()
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


async def record_history(
    *, session: AsyncSession, principal: Principal, source: str, record_id: str, pii: bool
) -> RecordHistory | None:
    """A record's versions, oldest first (None when there is no such record, or the
    caller may not see it: a matched record inside the caller's regions, an unmatched one
    to the sending department and county-level principals, as `list_raw_records`). The
    raw rows (ID numbers included) only with registry:pii."""
    current = (
        await session.execute(
            text(
                "SELECT f.household_id, f.id_number, f.revision, f.voided_at IS NOT NULL AS"
                " voided, f.batch_id, f.period, f.idx, f.received_at, f.data::text AS data,"
                " f.raw::text AS raw, h.region_code FROM feed_records f"
                " LEFT JOIN household_versions h ON h.household_id = f.household_id"
                " WHERE f.source = :s AND f.record_id = :r"
            ),
            {"s": source, "r": record_id},
        )
    ).one_or_none()
    if current is None:
        return None
    if current.household_id is None:
        visible = source in unmatched_sources(principal)
    elif current.region_code is None:  # a household whose village is not known yet
        visible = principal.county_level
    else:
        visible = principal.can_see(current.region_code)
    if not visible:
        return None
    rows = (
        await session.execute(
            text(
                "SELECT revision, action, batch_id, period, idx, received_at,"
                " data::text AS data, raw::text AS raw FROM feed_record_versions"
                " WHERE source = :s AND record_id = :r ORDER BY revision"
            ),
            {"s": source, "r": record_id},
        )
    ).all()
    versions = [(r.revision, r.action, r) for r in rows] or [(1, "original", current)]
    return RecordHistory(
        source=source,
        record_id=record_id,
        household_id=current.household_id,
        id_number=current.id_number if pii else mask_id(current.id_number),
        revision=current.revision,
        voided=current.voided,
        # A record never changed has no history rows: its one version is the record.
        items=[
            RecordVersionPublic(
                revision=revision,
                action=action,
                batch_id=r.batch_id,
                period=r.period,
                index=r.idx,
                received_at=r.received_at,
                data=orjson.loads(r.data) if r.data else None,
                raw=orjson.loads(r.raw) if pii else None,
            )
            for revision, action, r in versions
        ],
    )


async def list_errors(
    *, session: AsyncSession, source: str, batch_id: str, limit: int, cursor: str | None
) -> ErrorList:
    """Every rejected record of a batch (the summary lists the first ones only)."""
    after = decode_cursor(cursor, int)
    rows = (
        await session.execute(
            text(
                "SELECT idx, record_id, field, message, code, message_zh, line, column_header,"
                " value FROM rejected_records"
                " WHERE source = :s AND batch_id = :b AND idx > :after ORDER BY idx LIMIT :n"
            ),
            {"s": source, "b": batch_id, "after": after[0] if after else -1, "n": limit + 1},
        )
    ).all()
    items = [
        RecordError(
            index=r.idx,
            record_id=r.record_id,
            field=r.field,
            message=r.message,
            code=r.code,
            message_zh=r.message_zh,
            row=r.line,
            column=r.column_header,
            value=r.value,
        )
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
                    # Delivered means records accepted: a batch of nothing but
                    # rejected records is counted, not taken for a delivery.
                    "SELECT source, count(*) AS batches, coalesce(sum(accepted), 0) AS accepted,"
                    " min(received_at) FILTER (WHERE accepted > 0) AS first_at,"
                    " max(received_at) FILTER (WHERE accepted > 0) AS last_at"
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
        first_at = row.first_at if row is not None else None
        last_at = row.last_at if row is not None else None
        delivered = first_at is not None
        first_day = first_at.astimezone(tz).date() if first_at is not None else None
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
                first_received_at=first_at,
                last_received_at=last_at,
            )
        )
    return DeliveryList(period=str(period), items=items)
