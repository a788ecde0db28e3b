"""Ingesting a department's batch (数据交换), owning its unit of work.

`ingest_batch` streams the batch in chunks: validate, de-duplicate by
`(source, record_id)`, store with the raw row, match through the id_hash index, and
write `records.matched` (one per household) and `batch.received` to the outbox, all in
one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
import orjson
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox
from backstop.contracts.datasync import BatchReceived, RecordsMatched, RecordsVoided
from backstop.db import SessionFactory, raw_connection, unit_of_work
from backstop.errors import Problem, invalid
from backstop.events import make_event
from backstop.idnumber import mask_id
from backstop.logs import correlation_id
from backstop.settings import Settings
from backstop.sheets import SheetProblem
from services.datasync.columns import CODES_ZH
from services.datasync.config import DatasyncConfig
from services.datasync.domain import (
    CORRECTION,
    DEPARTMENTS,
    SERVICE,
    VOID,
    Context,
    FieldError,
    Period,
    StoredRecord,
    ValidRecord,
    change_of,
    changed_record_id,
    next_revision,
    on_time,
    raw_fingerprint,
    record_id_of,
    validate_record,
)
from services.datasync.matching import (
    MATCHING_LOCK,
    RECORDS_MATCHED,
    batch_records_item,
    batch_template,
    publish_batch_records,
)
from services.datasync.models import BatchSummary, RecordError
from services.datasync.parsing import FileLayout, Row
from services.datasync.unmatched import (
    RECORDS_UNMATCHED,
    emit_unmatched,
    new_people_items,
    person_json,
)

log = logging.getLogger("backstop.datasync")

FEED_BATCHES = Counter(
    "backstop_datasync_batches_total",
    "Department batches received, by source and timeliness (on_time, late, unscheduled).",
    ["source", "timeliness"],
)
FEED_RECORDS = Counter(
    "backstop_datasync_records_total",
    "Department feed records applied, by source and outcome.",
    ["source", "outcome"],
)
# Records parsed between two yields to the event loop (~1 ms of work): the database's
# answers are read at most that late while the next chunk is being parsed.
PARSE_SLICE = 100


@dataclass
class Chunk:
    """Up to `chunk_size` records, parsed and validated.

    `staged` holds the valid records, each as (index, record_id, id_hash, content_hash,
    raw JSON, line, Excel row, ID number, name, data JSON): the line is its
    `feed_records` row in COPY text format but for the household columns, known once
    the chunk is matched."""

    received: int = 0
    staged: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    last: bool = False


class Change(NamedTuple):
    """A correction (更正, with its validated `record`) or a void (作废, `record` None)
    of a record received before."""

    idx: int
    action: str  # CORRECTION or VOID
    record_id: str
    record: ValidRecord | None
    raw: bytes
    row: int | None


class Rejection(NamedTuple):
    """A record not accepted: where (record index; a file's Excel row and the column's
    header as written), what (field, value, English `code`), why (English and Chinese)."""

    idx: int
    record_id: str | None
    field: str
    message: str
    raw: str | None
    code: str
    message_zh: str
    row: int | None = None
    column: str | None = None
    value: str | None = None

    def error(self) -> RecordError:
        return RecordError(
            index=self.idx,
            record_id=self.record_id,
            field=self.field,
            message=self.message,
            code=self.code,
            message_zh=self.message_zh,
            row=self.row,
            column=self.column,
            value=self.value,
        )


def shown_value(field_name: str, value: Any) -> str | None:
    """A rejected value as an error may show it: ID numbers and names masked (the error
    list is read without registry:pii), long text cut."""
    if value is None:
        return None
    text = str(value)
    if field_name == "id_number":
        return mask_id(text.strip())
    if field_name == "name":
        return text[:1] + "*" * (len(text) - 1)
    return text[:100]


def rejection(
    index: int, row: Mapping[str, Any], line: int | None, exc: FieldError, ctx: Context, raw: str
) -> Rejection:
    return Rejection(
        index,
        record_id_of(row),
        exc.field,
        exc.message,
        raw,
        exc.code,
        exc.message_zh,
        line,
        ctx.columns.get(exc.field),
        shown_value(exc.field, row.get(exc.field)),
    )


# Positions in a staged record; the last three only in a chunk's first INSERT_BELOW
# records (kept for all, they added ~17 MB to a 10k-record JSON batch's peak).
_ID, _HASH, _CONTENT, _RAW, _LINE, _ID_NUMBER, _NAME, _DATA = 1, 2, 3, 4, 5, 7, 8, 9
_NOT_KEPT = (None, None, None)
# Chunks of fewer valid records than this are one INSERT of arrays, matched in the same
# statement; larger ones go by COPY, whose fixed cost (a lookup, a savepoint, two round
# trips for the COPY) pays off above it.
INSERT_BELOW = 200


@dataclass
class Tally:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    matched: int = 0
    corrected: int = 0
    voided: int = 0
    errors: list[RecordError] = field(default_factory=list)
    hasher: Any = field(default_factory=lambda: hashlib.sha256())
    # (household, period of the record, action, event form) of each matched change
    changed: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    # The new records as written, (household or None, id_hash, index, data JSON), while
    # every chunk went by INSERT (None once one went by COPY): a batch with no changes
    # emits its events from these instead of reading its records back.
    written: list[tuple[str | None, str, int, bytes]] | None = field(default_factory=list)

    def reject(self, rejected: Rejection, cap: int) -> None:
        self.rejected += 1
        if len(self.errors) < cap:
            self.errors.append(rejected.error())


def _raw_json(raw: dict[str, Any]) -> bytes:
    return orjson.dumps(raw, default=str, option=orjson.OPT_NON_STR_KEYS)


def prepare_chunk(
    rows: Iterator[tuple[int, Row | None]],
    ctx: Context,
    size: int,
    hasher: Any,
    copy_head: bytes | None = None,
    chunk: Chunk | None = None,
) -> Chunk:
    """Read and validate up to `size` more records into `chunk` (a new one by default).
    Feeds the batch content hash. With `copy_head` (the COPY text of the batch's
    constant columns) each valid record gets its `feed_records` line; without it (a
    replay) only the hash is computed."""
    chunk = Chunk() if chunk is None else chunk
    staged, rejected = chunk.staged, chunk.rejected
    fingerprints = []  # what the batch content hash takes, in record order
    received = 0
    for index, item in rows:
        received += 1
        if item is None:
            fingerprints.append(b"\x00null")
            rejected.append(
                Rejection(
                    index,
                    None,
                    "record",
                    "must be a JSON object",
                    None,
                    "not_an_object",
                    "记录：应为 JSON 对象",
                )
            )
        else:
            raw, row, row_number = item
            try:
                change = change_of(row)
                record = None if change == VOID else validate_record(row, ctx)
                changed_id = None if change is None else changed_record_id(row)
            except FieldError as exc:
                fingerprints.append(b"\x00" + raw_fingerprint(row))
                rejected.append(
                    rejection(index, row, row_number, exc, ctx, _raw_json(raw).decode())
                )
            else:
                if changed_id is not None:  # a correction or void, applied after the chunk
                    assert change is not None
                    # The flag is part of the batch's content: a record and its
                    # correction are not the same batch.
                    what = record.content_hash if record is not None else changed_id
                    fingerprints.append(b"\x00" + change.encode() + b"\x00" + what.encode())
                    chunk.changes.append(
                        Change(index, change, changed_id, record, _raw_json(raw), row_number)
                    )
                else:
                    assert record is not None
                    content = record.content_hash.encode()
                    fingerprints.append(b"\x00" + content)
                    if copy_head is not None:
                        raw_json = _raw_json(raw)
                        copy_line = b"\t".join(
                            (
                                copy_head,
                                _text(record.record_id),
                                b"%d" % index,
                                record.id_number.encode(),
                                record.id_hash.encode(),
                                _text(record.name),
                                # orjson writes no raw control characters: only the
                                # backslashes of its escapes need doubling.
                                record.data_json.replace(b"\\", b"\\\\"),
                                content,
                                raw_json.replace(b"\\", b"\\\\"),
                            )
                        )
                        staged.append(
                            (
                                index,
                                record.record_id,
                                record.id_hash,
                                content,
                                raw_json,
                                copy_line,
                                row_number,
                                # What an INSERT takes besides: kept only while the
                                # chunk is small enough for one (see INSERT_BELOW).
                                *(
                                    (record.id_number, record.name, record.data_json)
                                    if len(staged) < INSERT_BELOW
                                    else _NOT_KEPT
                                ),
                            )
                        )
        if received >= size:
            break
    else:
        chunk.last = True
    chunk.received += received
    hasher.update(b"".join(fingerprints))
    return chunk


_REJECTED_COLUMNS = [
    "source",
    "batch_id",
    "idx",
    "record_id",
    "field",
    "message",
    "raw",
    "code",
    "message_zh",
    "line",
    "column_header",
    "value",
]
_RECORD_COLUMNS = [
    "source",
    "batch_id",
    "period",
    "record_id",
    "idx",
    "id_number",
    "id_hash",
    "name",
    "data",
    "content_hash",
    "raw",
    "household_id",
    "matched_at",
]


async def ingest_batch(
    *,
    sessions: SessionFactory,
    settings: Settings,
    config: DatasyncConfig,
    source: str,
    batch_id: str,
    period: Period,
    fmt: str,
    filename: str | None,
    submitted_by: str,
    rows: Iterator[Row | None],
    layout: FileLayout | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Apply one batch; returns its summary and whether it was new.

    The batch row is claimed first (primary key `(source, batch_id)`), so a concurrent
    identical submission waits for this one and then replays its summary. A batch id
    already used gets its stored summary back when the content is the same, 409 otherwise.
    """
    received_at = now or datetime.now(UTC)
    today = received_at.astimezone(config.tz).date()
    ctx = Context(
        source=source,
        period=period,
        today=today,
        pii_key=settings.pii_key,
        derive=layout is not None,
        columns=layout.column_of if layout is not None else {},
    )
    numbered = enumerate(rows)
    tally = Tally()
    try:
        async with unit_of_work(sessions) as session:
            conn = await raw_connection(session)
            claimed = await conn.fetchval(
                _CLAIM,
                source,
                batch_id,
                str(period),
                fmt,
                filename,
                submitted_by[:200],
                received_at,
                layout.profile_version if layout is not None else None,
            )
            if not claimed:
                return await _replay(conn, source, batch_id, period, numbered, ctx, config), False
            summary = await _apply(
                session,
                conn,
                settings,
                config,
                source,
                batch_id,
                period,
                numbered,
                ctx,
                tally,
                received_at,
                layout,
            )
    except SheetProblem as exc:  # met while streaming: nothing of the batch is kept
        raise exc.problem() from None
    except (asyncpg.DeadlockDetectedError, asyncpg.UniqueViolationError):
        raise Problem(
            503,
            "another batch with some of the same record ids was being applied; send it again",
            headers={"Retry-After": "1"},
        ) from None
    # Counted once committed.
    for outcome, n in (
        ("accepted", tally.accepted),
        ("duplicate", tally.duplicates),
        ("rejected", tally.rejected),
        ("matched", tally.matched),
        ("corrected", tally.corrected),
        ("voided", tally.voided),
    ):
        FEED_RECORDS.labels(source, outcome).inc(n)
    on_time = summary.get("on_time")
    FEED_BATCHES.labels(source, "unscheduled" if on_time is None else
                        "on_time" if on_time else "late").inc()  # fmt: skip
    return summary, True


# The batch row, and once it is claimed the matching lock (shared, see MATCHING_LOCK;
# the record lookups are later statements, so they see what a snapshot committed before
# it) and the settings of the grouping of the batch's records (one short query: JIT
# costs more than it saves, and the sort fits in memory), in one round trip.
_CLAIM = (
    "WITH claimed AS MATERIALIZED (SELECT"
    f" pg_advisory_xact_lock_shared({MATCHING_LOCK}), set_config('jit', 'off', true),"
    " set_config('work_mem', '64MB', true))"
    " INSERT INTO feed_batches (source, batch_id, period, status, format, filename,"
    " submitted_by, received_at, received, accepted, duplicates, rejected, matched,"
    " unmatched, profile_version) VALUES ($1, $2, $3, 'processing', $4, $5, $6, $7,"
    " 0, 0, 0, 0, 0, 0, $8) ON CONFLICT (source, batch_id) DO NOTHING"
    " RETURNING (SELECT true FROM claimed)"
)


async def _chunks(
    rows: Iterator[tuple[int, Row | None]],
    ctx: Context,
    size: int,
    hasher: Any,
    copy_head: bytes | None = None,
) -> Any:
    """The batch chunk by chunk, the next one parsed while the database writes the
    current one (Python on one core, PostgreSQL on the other).

    The parsing runs in this thread, `PARSE_SLICE` records at a time between the
    writer's awaits, not in a worker thread: a thread busy with Python holds the GIL the
    event loop needs for every round trip to the database, and each one then waited a
    switch interval (5 ms), several per chunk."""

    async def parse(limit: int) -> Chunk:
        chunk = Chunk()
        while True:
            prepare_chunk(
                rows, ctx, min(PARSE_SLICE, limit - chunk.received), hasher, copy_head, chunk
            )
            if chunk.last or chunk.received >= limit:
                return chunk
            await asyncio.sleep(0)

    # A smaller first chunk: the database has nothing to do until it is parsed.
    pending = asyncio.ensure_future(parse(max(PARSE_SLICE, size // 4)))
    while True:
        try:
            chunk = await pending
        except BaseException:
            pending.cancel()
            raise
        if not chunk.last:
            pending = asyncio.ensure_future(parse(size))
        try:
            yield chunk
        except BaseException:
            if not pending.done():
                pending.cancel()  # the reader must not outlive the upload
                await asyncio.wait([pending])
            raise
        if chunk.last:
            return


async def _replay(
    conn: asyncpg.Connection,
    source: str,
    batch_id: str,
    period: Period,
    rows: Iterator[tuple[int, Row | None]],
    ctx: Context,
    config: DatasyncConfig,
) -> dict[str, Any]:
    stored = await conn.fetchrow(
        "SELECT period, content_hash, summary::text AS summary FROM feed_batches"
        " WHERE source = $1 AND batch_id = $2",
        source,
        batch_id,
    )
    assert stored is not None
    if stored["period"] != str(period):
        raise Problem(
            409,
            f"batch {batch_id} was already received for period {stored['period']}",
            errors=[{"loc": ["body", "batch_id"], "msg": "already used with other content"}],
        )
    hasher = hashlib.sha256()
    received = 0
    async with contextlib.aclosing(_chunks(rows, ctx, config.chunk_size, hasher)) as chunks:
        async for chunk in chunks:
            received += chunk.received
    if received == 0:
        raise invalid(["body", "records"], "the batch has no records")
    if hasher.hexdigest() != stored["content_hash"]:
        raise Problem(
            409,
            f"batch {batch_id} was already received with different content;"
            " send changed records in a new batch",
            errors=[{"loc": ["body", "batch_id"], "msg": "already used with other content"}],
        )
    summary: dict[str, Any] = orjson.loads(stored["summary"])
    return summary


async def _apply(
    session: AsyncSession,
    conn: asyncpg.Connection,
    settings: Settings,
    config: DatasyncConfig,
    source: str,
    batch_id: str,
    period: Period,
    rows: Iterator[tuple[int, Row | None]],
    ctx: Context,
    tally: Tally,
    received_at: datetime,
    layout: FileLayout | None,
) -> dict[str, Any]:
    copy_head = b"\t".join((_text(source), _text(batch_id), _text(str(period))))
    async with contextlib.aclosing(
        _chunks(rows, ctx, config.chunk_size, tally.hasher, copy_head)
    ) as chunks:
        async for chunk in chunks:
            tally.received += chunk.received
            rejected = list(chunk.rejected)
            if chunk.staged:
                rejected += await _write_records(
                    conn, source, batch_id, str(period), chunk, tally, ctx.columns
                )
            if chunk.changes:  # after the chunk's new records: a change may name one
                rejected += await _apply_changes(
                    conn, source, batch_id, str(period), chunk.changes, tally, ctx.columns
                )
            if chunk.changes:
                tally.written = None  # a change may be to a record written above
            if rejected:
                rejected.sort()
                for r in rejected:
                    tally.reject(r, config.max_errors_listed)
                records = [(source, batch_id, *r) for r in rejected]
                if len(records) < COPY_FROM:
                    await conn.executemany(_INSERT_REJECTED, records)
                else:
                    await conn.copy_records_to_table(
                        "rejected_records", records=records, columns=_REJECTED_COLUMNS
                    )
    if tally.received == 0:
        raise invalid(["body", "records"], "the batch has no records")

    events = await _publish_records(session, conn, source, batch_id, str(period), tally)
    due = config.rules.due_on(source, period)
    in_time = on_time(due, received_at.astimezone(config.tz).date())
    tally.errors.sort(key=lambda e: e.index)
    summary = BatchSummary(
        batch_id=batch_id,
        source=source,
        period=str(period),
        received=tally.received,
        accepted=tally.accepted,
        duplicates=tally.duplicates,
        rejected=tally.rejected,
        matched=tally.matched,
        unmatched=tally.accepted - tally.matched,
        errors=tally.errors,
        errors_total=tally.rejected,
        corrected=tally.corrected,
        voided=tally.voided,
        on_time=in_time,
        due_on=due,
        **(layout.describe() if layout is not None else {"record_id_rule": "field record_id"}),
    ).model_dump(mode="json")
    received_event = make_event(
        SERVICE,
        BatchReceived(
            source=source,
            batch_id=batch_id,
            period=str(period),
            received=tally.received,
            accepted=tally.accepted,
            rejected=tally.rejected,
            matched=tally.matched,
            unmatched=tally.accepted - tally.matched,
            on_time=in_time,
            duplicates=tally.duplicates,
            department=DEPARTMENTS[source],
            due_on=due,
            corrected=tally.corrected,
            voided=tally.voided,
        ),
        subject=f"{source}/{batch_id}",
        correlation_id=correlation_id.get() or batch_id,
    )
    events.extend(outbox.event_rows(session, [received_event], key=source))
    insert_events, event_arrays = outbox.chained_insert(events, first_param=13)
    await conn.execute(
        "WITH done AS (UPDATE feed_batches SET status = 'done', content_hash = $3,"
        " completed_at = now(), due_on = $4, on_time = $5, received = $6, accepted = $7,"
        " duplicates = $8, rejected = $9, matched = $10, unmatched = $11,"
        " summary = $12::jsonb WHERE source = $1 AND batch_id = $2) " + insert_events,
        source,
        batch_id,
        tally.hasher.hexdigest(),
        due,
        in_time,
        tally.received,
        tally.accepted,
        tally.duplicates,
        tally.rejected,
        tally.matched,
        tally.accepted - tally.matched,
        orjson.dumps(summary).decode(),
        *event_arrays,
    )
    outbox.wake()
    log.info(
        "batch %s/%s for %s: %d received, %d accepted, %d duplicates, %d rejected, %d matched",
        source,
        batch_id,
        period,
        tally.received,
        tally.accepted,
        tally.duplicates,
        tally.rejected,
        tally.matched,
    )
    return summary


async def _publish_records(
    session: AsyncSession,
    conn: asyncpg.Connection,
    source: str,
    batch_id: str,
    period: str,
    tally: Tally,
) -> list[tuple[Any, ...]]:
    """The batch's `records.matched`, `records.voided` and `records.unmatched`: written
    to the outbox from the stored records, streamed; or, for a batch whose records are
    all in `tally.written`, returned as outbox rows to write with the batch's summary."""
    if tally.written is not None:
        return _written_events(session, source, batch_id, period, tally.written)
    await publish_batch_records(
        session, conn, source=source, batch_id=batch_id, period=period, correlation=batch_id
    )
    if tally.changed:
        await _emit_changes(session, source, batch_id, tally.changed)
    await emit_unmatched(
        session, conn, source=source, batch_id=batch_id, period=period, correlation=batch_id,
        changes=bool(tally.corrected or tally.voided),
    )  # fmt: skip
    return []


_NULL = b"\\N"


def _text(value: str | None) -> bytes:
    """A value in PostgreSQL's COPY text format (backslash, tab and newlines escaped)."""
    if value is None:
        return _NULL
    # Tested on the str: `in` on bytes costs several times more.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value.encode()


async def _stream(payload: bytes, size: int = 1 << 20) -> AsyncIterator[memoryview]:
    """COPY data straight from memory (a file-like source would be read through the
    thread pool, a hop per block)."""
    view = memoryview(payload)
    for start in range(0, len(view), size):
        yield view[start : start + size]


def copy_payload(staged: list[tuple[Any, ...]], matched_to: dict[str, bytes]) -> tuple[bytes, int]:
    """The COPY (text format) of staged records into `feed_records`: each line's head,
    then its household columns (`matched_to`: id_hash → those columns, matched ones)."""
    parts = []
    matched = 0
    for row in staged:
        tail = matched_to.get(row[_HASH])
        if tail is None:
            tail = _UNMATCHED
        else:
            matched += 1
        parts.append(row[_LINE])
        parts.append(tail)
    return b"".join(parts), matched


_UNMATCHED = b"\t\\N\t\\N\n"

_INSERT_RECORDS = (
    "INSERT INTO feed_records (source, batch_id, period, record_id, idx, id_number, id_hash,"
    " name, data, content_hash, raw, household_id, matched_at)"
    " SELECT $1, $2, $3, r.record_id, r.idx, r.id_number, r.id_hash, r.name, r.data::json,"
    " r.content_hash, r.raw::json, m.household_id,"
    " CASE WHEN m.household_id IS NOT NULL THEN $4::timestamptz END"
    " FROM unnest($5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::text[],"
    " $11::text[], $12::text[]) AS r(record_id, idx, id_number, id_hash, name, data,"
    " content_hash, raw)"
    # The latest claim on a person wins while a move between households is half-way.
    " LEFT JOIN LATERAL (SELECT household_id FROM person_index p WHERE p.id_hash = r.id_hash"
    " ORDER BY p.since DESC LIMIT 1) m ON true"
    " ORDER BY r.idx ON CONFLICT (source, record_id) DO NOTHING"
    " RETURNING record_id, household_id"
)
_INSERT_REJECTED = (
    f"INSERT INTO rejected_records ({', '.join(_REJECTED_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(_REJECTED_COLUMNS) + 1))})"
)
COPY_FROM = 50  # rejected records; below this an INSERT per record (one round trip)


async def _applied(
    conn: asyncpg.Connection, source: str, record_ids: list[str]
) -> dict[str, tuple[str, set[bytes], bool]]:
    """record id → (batch, content hashes of its versions, voided) of those applied."""
    return {
        r["record_id"]: (
            r["batch_id"],
            {r["content_hash"].encode(), *(h.encode() for h in r["earlier"])},
            r["voided"],
        )
        for r in await conn.fetch(
            "SELECT record_id, batch_id, content_hash, voided_at IS NOT NULL AS voided,"
            " CASE WHEN revision = 1 THEN '{}'::text[] ELSE ARRAY("
            "   SELECT v.content_hash FROM feed_record_versions v WHERE v.source = f.source"
            "   AND v.record_id = f.record_id AND v.content_hash IS NOT NULL) END AS earlier"
            " FROM feed_records f WHERE source = $1 AND record_id = ANY($2::text[])",
            source,
            record_ids,
        )
    }


def _written_events(
    session: AsyncSession,
    source: str,
    batch_id: str,
    period: str,
    written: list[tuple[str | None, str, int, bytes]],
) -> list[tuple[Any, ...]]:
    """The outbox rows of the batch's `records.matched` (one per household) and
    `records.unmatched` (its people in no household), from its records as written: the
    events `publish_batch_records` and `emit_unmatched` write from the stored records,
    without reading them back."""
    households: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    people: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for household_id, id_hash, index, data in written:
        if household_id is None:
            people[id_hash].append((index, data))
        else:
            households[household_id].append((index, data))
    head = {"source": source, "batch_id": batch_id, "period": period}
    matched = [
        batch_records_item(household_id, b"[" + b",".join(d for _, d in sorted(items)) + b"]", head)
        for household_id, items in sorted(households.items())
    ]
    unmatched = new_people_items(
        source,
        batch_id,
        period,
        [person_json(h, [d for _, d in sorted(items)]) for h, items in sorted(people.items())],
    )
    return outbox.bulk_rows(
        session, batch_template(RECORDS_MATCHED, batch_id), matched
    ) + outbox.bulk_rows(session, batch_template(RECORDS_UNMATCHED, batch_id), unmatched)


async def _write_records(
    conn: asyncpg.Connection,
    source: str,
    batch_id: str,
    period: str,
    chunk: Chunk,
    tally: Tally,
    columns: Mapping[str, str],
) -> list[Rejection]:
    """Write the chunk's new records into `feed_records`, matched as they land.

    A record id already applied (earlier batch, earlier chunk or earlier in this chunk)
    with the same content (or that of an earlier version of a corrected record) is a
    duplicate; with other content it is rejected, never an overwrite (a correction says
    so with its flag); a voided record is rejected. New records are the common case: a
    small chunk is one INSERT that matches its records and skips the record ids applied
    before; a large one is first copied as it is under a savepoint, and only when the
    primary key refuses it are the applied ids looked up and the COPY repeated without
    them. (Both wait for a record id another open transaction is inserting, so a
    concurrent batch is seen once committed.)
    """
    first: dict[str, tuple[Any, ...]] = {}
    repeats: list[tuple[Any, ...]] = []
    for row in chunk.staged:
        if row[_ID] in first:
            repeats.append(row)
        else:
            first[row[_ID]] = row
    # record id → (batch, content hashes of its versions, voided) of the records applied
    # before: a corrected record's earlier versions too, so a department sending its
    # original file again changes nothing (the correction stands).
    existing: dict[str, tuple[str, set[bytes], bool]] = {}
    if len(chunk.staged) < INSERT_BELOW:
        rows = list(first.values())
        inserted = dict(
            await conn.fetch(
                _INSERT_RECORDS,
                source,
                batch_id,
                period,
                datetime.now(UTC),
                list(first),
                [row[0] for row in rows],
                [row[_ID_NUMBER] for row in rows],
                [row[_HASH] for row in rows],
                [row[_NAME] for row in rows],
                [row[_DATA].decode() for row in rows],
                [row[_CONTENT].decode() for row in rows],
                [row[_RAW].decode() for row in rows],
            )
        )
        if len(inserted) < len(first):
            existing = await _applied(conn, source, [i for i in first if i not in inserted])
        fresh = [row for row in rows if row[_ID] in inserted]
        matched = sum(household is not None for household in inserted.values())
        if tally.written is not None:
            tally.written += [(inserted[row[_ID]], row[_HASH], row[0], row[_DATA]) for row in fresh]
    else:
        tally.written = None
        stamp = _text(datetime.now(UTC).isoformat())
        matched_to = {
            r[0]: b"\t" + _text(r[1]) + b"\t" + stamp + b"\n"
            for r in await conn.fetch(
                # The latest claim on a person wins while a move between households is
                # half-way.
                "SELECT DISTINCT ON (id_hash) id_hash, household_id FROM person_index"
                " WHERE id_hash = ANY($1::text[]) ORDER BY id_hash, since DESC",
                list({row[_HASH] for row in first.values()}),
            )
        }

        async def copy(rows: list[tuple[Any, ...]]) -> int:
            """COPY `rows`; returns how many of them matched a household."""
            payload, matched = copy_payload(rows, matched_to)
            await conn.copy_to_table(
                "feed_records", source=_stream(payload), columns=_RECORD_COLUMNS, format="text"
            )
            return matched

        fresh = list(first.values())
        try:
            async with conn.transaction():  # a savepoint inside the batch's transaction
                matched = await copy(fresh)
        except asyncpg.UniqueViolationError:
            existing = await _applied(conn, source, list(first))
            fresh = [row for record_id, row in first.items() if record_id not in existing]
            matched = await copy(fresh) if fresh else 0
    tally.accepted += len(fresh)
    tally.matched += matched

    rejected = []
    leftovers = [row for row in first.values() if row[_ID] in existing] if existing else []
    for index, record_id, _, content, raw, _, row_number, *_ in leftovers + repeats:
        stored_batch, versions, voided = existing.get(record_id) or (
            batch_id,
            {first[record_id][_CONTENT]},
            False,
        )
        if voided:
            problem = FieldError(
                "record_id",
                f"record {record_id} was voided; send it under a new record id",
                "voided_record",
            )
        elif content in versions:
            tally.duplicates += 1
            continue
        else:
            where = "this batch" if stored_batch == batch_id else f"batch {stored_batch}"
            problem = FieldError(
                "record_id",
                f"record {record_id} was already received in {where} with different"
                " content; it is not overwritten (send it with correction: true to replace it)",
                "changed_record",
            )
        rejected.append(_refused(index, record_id, raw, row_number, columns, problem))
    return rejected


def _refused(
    index: int,
    record_id: str,
    raw: bytes,
    row_number: int | None,
    columns: Mapping[str, str],
    problem: FieldError,
) -> Rejection:
    """A valid record refused for what was received before under its record id."""
    return Rejection(
        index,
        record_id,
        problem.field,
        problem.message,
        raw.decode(),
        problem.code,
        f"记录编号 {record_id}：{CODES_ZH[problem.code]}",
        row_number,
        columns.get(problem.field),
        record_id if problem.field == "record_id" else None,
    )


_STORED = (
    "SELECT revision, voided_at IS NOT NULL AS voided, id_hash, content_hash, household_id,"
    " period FROM feed_records"
    " WHERE source = $1 AND record_id = $2 FOR UPDATE"
)
# The version a first change replaces: copied into the history as the original.
_KEEP_ORIGINAL = (
    "INSERT INTO feed_record_versions (source, record_id, revision, action, batch_id, period,"
    " idx, household_id, data, content_hash, raw, received_at)"
    " SELECT source, record_id, 1, 'original', batch_id, period, idx, household_id, data,"
    " content_hash, raw, received_at FROM feed_records"
    " WHERE source = $1 AND record_id = $2 ON CONFLICT DO NOTHING"
)
_KEEP_VERSION = (
    "INSERT INTO feed_record_versions (source, record_id, revision, action, batch_id, period,"
    " idx, household_id, data, content_hash, raw)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::json, $10, $11::json)"
)
_CORRECT = (
    "UPDATE feed_records SET revision = $3, data = $4::json, content_hash = $5, name = $6"
    " WHERE source = $1 AND record_id = $2"
)
_VOID = (
    "UPDATE feed_records SET revision = $3, voided_at = now() WHERE source = $1 AND record_id = $2"
)


async def _apply_changes(
    conn: asyncpg.Connection,
    source: str,
    batch_id: str,
    period: str,
    changes: list[Change],
    tally: Tally,
    columns: Mapping[str, str],
) -> list[Rejection]:
    """Apply the chunk's corrections and voids in batch order, each to the record its
    record id names (locked, so two batches changing one record take turns): the record
    gets the next revision, and the history keeps the version replaced and the new one.
    A change of a record never received, or already voided, or a correction naming
    another person, is rejected with its reason; the same change sent again is a
    duplicate. Corrections are rare next to new records: one at a time is enough."""
    rejected = []
    for change in changes:
        record = change.record
        stored = await conn.fetchrow(_STORED, source, change.record_id)
        try:
            revision = next_revision(
                change.action,
                None
                if stored is None
                else StoredRecord(
                    stored["revision"], stored["voided"], stored["id_hash"], stored["content_hash"]
                ),
                record_id=change.record_id,
                id_hash=record.id_hash if record is not None else None,
                content_hash=record.content_hash if record is not None else None,
            )
        except FieldError as exc:
            rejected.append(
                _refused(change.idx, change.record_id, change.raw, change.row, columns, exc)
            )
            continue
        if revision is None:
            tally.duplicates += 1
            continue
        assert stored is not None
        if stored["revision"] == 1:
            await conn.execute(_KEEP_ORIGINAL, source, change.record_id)
        household_id = stored["household_id"]
        data_json = (
            None if record is None else orjson.dumps({**record.data, "revision": revision}).decode()
        )
        await conn.execute(
            _KEEP_VERSION,
            source,
            change.record_id,
            revision,
            change.action,
            batch_id,
            period,
            change.idx,
            household_id,
            data_json,
            record.content_hash if record is not None else None,
            change.raw.decode(),
        )
        if record is not None:
            await conn.execute(
                _CORRECT,
                source,
                change.record_id,
                revision,
                data_json,
                record.content_hash,
                record.name,
            )
            tally.corrected += 1
            event_form = {**record.data, "revision": revision}
        else:
            await conn.execute(_VOID, source, change.record_id, revision)
            tally.voided += 1
            event_form = {
                "source": source,
                "record_id": change.record_id,
                "id_hash": stored["id_hash"],
                "revision": revision,
            }
        tally.accepted += 1
        if household_id is not None:  # an unmatched one leaves when it is matched
            tally.matched += 1
            tally.changed.append((household_id, stored["period"], change.action, event_form))
    return rejected


async def _emit_changes(
    session: AsyncSession,
    source: str,
    batch_id: str,
    changed: list[tuple[str, str, str, dict[str, Any]]],
) -> None:
    """Per household and period of the records changed: one `records.matched` with the
    corrections (their new content and revision) and one `records.voided` with the
    voids. A record corrected twice in the batch leaves once, as last corrected."""
    groups: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for household_id, period, action, form in changed:
        groups.setdefault((household_id, period, action), {})[form["record_id"]] = form
    events = []
    for (household_id, period, action), forms in sorted(groups.items()):
        common = {
            "household_id": household_id,
            "source": source,
            "batch_id": batch_id,
            "period": period,
            "records": list(forms.values()),
        }
        payload = (
            RecordsMatched.model_validate(common)
            if action == CORRECTION
            else RecordsVoided.model_validate(common)
        )
        events.append(
            make_event(
                SERVICE,
                payload,
                subject=household_id,
                correlation_id=correlation_id.get() or batch_id,
            )
        )
    await outbox.publish_many(session, events)
