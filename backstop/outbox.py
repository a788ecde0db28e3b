"""The transactional outbox: events are rows written in the business transaction, and a
relay sends them to Kafka after the commit.

Nothing can stop the relay. An event larger than the broker takes is refused where it is
written (413, `EventTooLarge`); a row Kafka still refuses for good (too large for a
topic, not serializable) is parked with its error and leaves the ordered stream, so the
rows written after it go on; an operator re-sends or drops it (`backstop.admin`, `python
-m backstop.cli outbox`). A broker outage parks nothing: the rows wait, in order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import metrics, tracing
from backstop.bus import KafkaProducerHolder, event_headers, is_permanent, message_size
from backstop.db import SessionFactory, raw_connection
from backstop.errors import Problem
from backstop.events import CloudEvent, new_event_id, spec_of
from backstop.settings import Settings
from backstop.tables import outbox

log = logging.getLogger("backstop.outbox")

# One relay at a time per database sends (pg advisory lock), so a household's events keep
# their order even with several replicas; SKIP LOCKED keeps a claimed row from being re-read.
_RELAY_LOCK = 0x6261636B73746F70  # "backstop"

_wakeups: set[asyncio.Event] = set()
COPY_FROM = 50  # events; below this a multi-row INSERT is cheaper than COPY
SEND_TIMEOUT_S = 60.0  # for Kafka to acknowledge one batch; then the relay starts over
# session.info key of the broker's message size limit (set by the runtime's sessions).
MAX_MESSAGE_BYTES = "kafka_max_message_bytes"
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576


class EventTooLarge(Problem):
    """The event a request would publish is larger than the broker accepts. Raised in
    the unit of work, so nothing of the request is written (413)."""

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        super().__init__(
            413,
            f"this request would publish an event ({event_type}) of {size} bytes; the"
            f" broker accepts at most {limit}: send less in one request",
        )


def outbox_row(event: CloudEvent, key: str | None) -> dict[str, object]:
    return {
        "event_id": event.id,
        "topic": spec_of(event.type).topic,
        "key": key or event.subject or event.id,
        "event_type": event.type,
        "correlation_id": event.correlationid,
        "value": event.to_bytes(),
    }


async def publish(session: AsyncSession, event: CloudEvent, *, key: str | None = None) -> None:
    """Write `event` to the outbox in the caller's transaction (key defaults to subject)."""
    await publish_many(session, [event], key=key)


async def publish_many(
    session: AsyncSession, events: Sequence[CloudEvent], *, key: str | None = None
) -> None:
    """Write many events in the caller's transaction; large lists go by COPY."""
    if events:
        await _write(session, _COLUMNS, event_rows(session, events, key=key))


def event_rows(
    session: AsyncSession, events: Sequence[CloudEvent], *, key: str | None = None
) -> list[tuple[Any, ...]]:
    """The outbox rows of `events` (as `publish_many` writes them), for a caller that
    writes them with its own statement (`chained_insert`). Raises EventTooLarge."""
    pick = itemgetter(*_COLUMNS)
    rows = [pick(outbox_row(e, key)) for e in events]
    _check_sizes(_limit(session), rows)
    return rows


async def publish_bulk(
    session: AsyncSession, template: CloudEvent, items: Iterable[tuple[str, dict[str, Any]]]
) -> int:
    """Write one event per `(subject, data)` in the caller's transaction: each is
    `template` (source, type, time, correlation id) with its own id, that subject (also
    the key) and that data. Returns how many were written.

    The bulk form of `publish_many` for thousands of events of one type: no model per
    event, and `data` is serialized by orjson as given, so it must be JSON-ready (what
    `model_dump(mode="json")` gives) and may hold `orjson.Fragment`s, JSON the producer
    already has as text. The value is the envelope `CloudEvent.to_bytes` writes."""
    rows = bulk_rows(session, template, items)
    if rows:
        await _write(session, _COLUMNS, rows)
    return len(rows)


def bulk_rows(
    session: AsyncSession, template: CloudEvent, items: Iterable[tuple[str, dict[str, Any]]]
) -> list[tuple[Any, ...]]:
    """The outbox rows `publish_bulk` writes, for a caller that writes them with its own
    statement (`chained_insert`). Raises EventTooLarge."""
    shape = template.model_copy(update={"subject": "", "data": {}})
    envelope = shape.model_dump(mode="json", exclude_none=True)
    topic, event_type, correlation = (
        spec_of(template.type).topic,
        template.type,
        template.correlationid,
    )
    rows: list[tuple[object, ...]] = []
    for subject, data in items:
        event_id = new_event_id()
        envelope["id"], envelope["subject"], envelope["data"] = event_id, subject, data
        rows.append((event_id, topic, subject, event_type, correlation, orjson.dumps(envelope)))
    _check_sizes(_limit(session), rows)
    return rows


_COLUMNS = ["event_id", "topic", "key", "event_type", "correlation_id", "value"]
_INSERT_SQL = f"INSERT INTO outbox ({', '.join(_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6)"


def envelope_row(envelope: dict[str, Any], *, max_message_bytes: int) -> tuple[Any, ...]:
    """The outbox row of an event given as the plain values of its envelope (CloudEvent's
    fields, None ones left out; `time` a UTC datetime; `data` JSON-ready, what
    `model_dump(mode="json")` gives), serialized once by orjson: the bytes
    `CloudEvent.to_bytes` writes, without a model built and dumped. Keyed by the subject.
    An event the broker would refuse raises EventTooLarge."""
    subject = envelope.get("subject") or envelope["id"]
    row = (
        envelope["id"],
        spec_of(envelope["type"]).topic,
        subject,
        envelope["type"],
        envelope.get("correlationid"),
        orjson.dumps(envelope, option=orjson.OPT_UTC_Z),
    )
    _check_sizes(max_message_bytes, [row])
    return row


def chained_insert(
    rows: Sequence[tuple[Any, ...]], *, first_param: int
) -> tuple[str, list[list[Any]]]:
    """The outbox INSERT of `rows` (each an `envelope_row`, `event_rows` or `bulk_rows`
    row), for a caller that writes its rows and their events in one statement (its
    inserts chained as data-modifying CTEs): the SQL, whose parameters are numbered from
    `first_param`, and those parameters (one array per column)."""
    n = first_param
    sql = (
        f"INSERT INTO outbox ({', '.join(_COLUMNS)}) SELECT * FROM unnest(${n}::text[],"
        f" ${n + 1}::text[], ${n + 2}::text[], ${n + 3}::text[], ${n + 4}::text[],"
        f" ${n + 5}::bytea[])"
    )
    return sql, [list(column) for column in zip(*rows, strict=True)]


def max_message_bytes(sessions: SessionFactory) -> int:
    """The broker's message size limit the runtime gave its sessions."""
    info = sessions.kw.get("info") or {}
    return int(info.get(MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES))


def _limit(session: AsyncSession) -> int:
    return int(session.info.get(MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES))


async def _write(session: AsyncSession, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Rows already checked by `event_rows` / `bulk_rows`."""
    connection = await raw_connection(session)
    if len(rows) < COPY_FROM:
        # On the driver: one prepared statement, one round trip for the rows.
        await connection.executemany(_INSERT_SQL, rows)
    else:
        await connection.copy_records_to_table(outbox.name, records=rows, columns=columns)
    wake()


def _check_sizes(limit: int, rows: list[tuple[Any, ...]]) -> None:
    """Refuse (EventTooLarge) a row the broker would refuse; rows are in _COLUMNS order."""
    margin = limit - 1024  # below this no key and headers make a row too large
    # Only the few rows near the limit are measured exactly (datasync writes thousands).
    for _, _, key, event_type, correlation, value in [
        r for r in rows if len(r[5]) + len(r[2]) > margin
    ]:
        size = message_size(key.encode(), value, event_headers(event_type, correlation))
        if size > limit:
            raise EventTooLarge(event_type, size, limit)


def wake() -> None:
    """Wake the in-process relay (it also polls, so this only saves latency)."""
    for event in _wakeups:
        event.set()


async def backlog(session: AsyncSession) -> int:
    """Rows waiting to be sent (parked rows are not waiting)."""
    return int(
        await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.parked_at.is_(None))
        )
        or 0
    )


# --- parked rows: what an operator sees and does (admin endpoint, CLI) --------------

PARKED_COLUMNS = (
    outbox.c.id,
    outbox.c.event_id,
    outbox.c.topic,
    outbox.c.key,
    outbox.c.event_type,
    outbox.c.correlation_id,
    func.length(outbox.c.value).label("size"),
    outbox.c.created_at,
    outbox.c.parked_at,
    outbox.c.error,
)


async def parked(
    session: AsyncSession, *, limit: int = 100, after_id: int | None = None
) -> list[Any]:
    """Parked rows, oldest first, without their value (it may hold personal data)."""
    stmt = (
        select(*PARKED_COLUMNS)
        .where(outbox.c.parked_at.is_not(None))
        .order_by(outbox.c.id)
        .limit(limit)
    )
    if after_id is not None:
        stmt = stmt.where(outbox.c.id > after_id)
    return list((await session.execute(stmt)).all())


async def parked_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.parked_at.is_not(None))
        )
        or 0
    )


async def resend_parked(session: AsyncSession, ids: Sequence[int] | None = None) -> int:
    """Put parked rows (all when `ids` is None) back in the stream: the relay sends them
    next, before newer rows. Kafka refusing one again parks it again."""
    stmt = update(outbox).where(outbox.c.parked_at.is_not(None))
    if ids is not None:
        stmt = stmt.where(outbox.c.id.in_(list(ids)))
    result = await session.execute(stmt.values(parked_at=None, error=None))
    wake()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def drop_parked(session: AsyncSession, ids: Sequence[int] | None = None) -> int:
    """Delete parked rows (all when `ids` is None): those events are never sent."""
    stmt = delete(outbox).where(outbox.c.parked_at.is_not(None))
    if ids is not None:
        stmt = stmt.where(outbox.c.id.in_(list(ids)))
    result = await session.execute(stmt.returning(outbox.c.id, outbox.c.event_id))
    dropped = result.all()
    for row in dropped:
        log.warning("parked outbox row %d (event %s) dropped by an operator", row.id, row.event_id)
    return len(dropped)


# The sent rows' ids as one JSON parameter: one statement text, prepared once, however
# many rows (an IN list is a new statement for each count).
_DELETE_SENT = text(
    "DELETE FROM outbox WHERE id IN"
    " (SELECT CAST(json_array_elements_text(CAST(:ids AS json)) AS bigint))"
)


class OutboxRelay:
    """Claims outbox rows in id order, sends them with an idempotent producer, deletes
    them once Kafka acknowledged. While Kafka is down it backs off and retries; the rows
    wait in the table."""

    def __init__(self, *, sessions: SessionFactory, settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self.producer = KafkaProducerHolder(settings)
        self._wake = asyncio.Event()
        self._stopping = False

    async def run(self) -> None:
        _wakeups.add(self._wake)
        backoff = 0.1
        try:
            while not self._stopping:
                try:
                    with tracing.quiet():  # each row's send is traced in its event's trace
                        sent = await self.relay_once()
                    backoff = 0.1
                except Exception as exc:  # Kafka or DB down: keep the rows, retry later
                    log.warning("outbox relay failed, retrying in %.1fs: %s", backoff, exc)
                    metrics.OUTBOX_FAILURES.labels(self.settings.service).inc()
                    await self.producer.reset()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if sent == 0:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(
                            self._wake.wait(), timeout=self.settings.outbox_poll_interval_s
                        )
                        await asyncio.sleep(0.005)  # let the writer's commit land
                    except TimeoutError:
                        pass
        finally:
            _wakeups.discard(self._wake)
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def relay_once(self) -> int:
        """Send one batch; returns how many events left."""
        async with self.sessions() as session, session.begin():
            locked = await session.scalar(select(func.pg_try_advisory_xact_lock(_RELAY_LOCK)))
            if not locked:
                return 0
            rows = (
                await session.execute(
                    select(
                        outbox.c.id,
                        outbox.c.event_id,
                        outbox.c.topic,
                        outbox.c.key,
                        outbox.c.event_type,
                        outbox.c.correlation_id,
                        outbox.c.value,
                    )
                    .where(outbox.c.parked_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(self.settings.outbox_batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                metrics.OUTBOX_BACKLOG.labels(self.settings.service).set(0)
                return 0
            started = time.perf_counter()
            delivered, refused = await self._send(rows)
            if delivered:
                await session.execute(_DELETE_SENT, {"ids": orjson.dumps(list(delivered)).decode()})
            for row, exc in refused:
                await self._park(session, row, exc)
            # One counter update per topic and type, not per row.
            sent = Counter((row.topic, row.event_type) for row in rows if row.id in delivered)
            for (topic, event_type), n in sent.items():
                metrics.EVENTS_PUBLISHED.labels(topic, event_type).inc(n)
            metrics.OUTBOX_SEND_SECONDS.labels(self.settings.service).observe(
                time.perf_counter() - started
            )
        return len(rows)

    async def _send(self, rows: Sequence[Any]) -> tuple[set[int], list[tuple[Any, Exception]]]:
        """Send `rows` in id order; returns the ids Kafka acknowledged and the rows it
        refused for good. A transient failure (outage) raises: the transaction rolls back
        and every row is sent again later (consumers are idempotent)."""
        producer = await self.producer.get()
        refused: list[tuple[Any, Exception]] = []
        pending: list[tuple[Any, asyncio.Future[Any]]] = []
        for row in rows:
            try:
                # The producer refuses a record over kafka_max_message_bytes right here.
                with tracing.restored(row.value):
                    future = await producer.send(
                        self.settings.topic(row.topic),
                        value=row.value,
                        key=row.key.encode(),
                        headers=event_headers(row.event_type, row.correlation_id),
                    )
            except Exception as exc:
                if not is_permanent(exc):
                    raise
                refused.append((row, exc))
                continue
            pending.append((row, future))
        # Bounded: a producer whose sender died (a refused batch can break its sequence
        # numbers) would never settle the rest; the timeout raises, the relay resets it.
        results = await asyncio.wait_for(
            asyncio.gather(*(f for _, f in pending), return_exceptions=True), SEND_TIMEOUT_S
        )
        delivered = {row.id for (row, _), r in zip(pending, results, strict=True)
                     if not isinstance(r, BaseException)}  # fmt: skip
        failed = [(row, r) for (row, _), r in zip(pending, results, strict=True)
                  if isinstance(r, BaseException)]  # fmt: skip
        for _, error in failed:
            if not is_permanent(error):
                raise error
        if failed:
            # The broker refused a batch (its limit is below ours): the batch's other rows
            # failed with it. Each goes again alone, in order, on a new producer (the old
            # one's sequence numbers broke with the batch); what is refused alone is parked.
            await self.producer.reset()
            for row, _ in sorted(failed, key=lambda f: f[0].id):
                try:
                    producer = await self.producer.get()
                    alone = producer.send_and_wait(
                        self.settings.topic(row.topic),
                        value=row.value,
                        key=row.key.encode(),
                        headers=event_headers(row.event_type, row.correlation_id),
                    )
                    with tracing.restored(row.value):
                        await asyncio.wait_for(alone, SEND_TIMEOUT_S)
                    delivered.add(row.id)
                except Exception as exc:
                    if not is_permanent(exc):
                        raise
                    refused.append((row, exc))
                    await self.producer.reset()
        return delivered, refused

    async def _park(self, session: AsyncSession, row: Any, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:500]
        await session.execute(
            update(outbox).where(outbox.c.id == row.id).values(parked_at=func.now(), error=error)
        )
        # The event's id, type and size only: its value may hold personal data.
        log.error(
            "outbox row %d parked (event %s, %s on %s, %d bytes): %s",
            row.id, row.event_id, row.event_type, row.topic, len(row.value), error,
        )  # fmt: skip
        metrics.OUTBOX_PARKED_TOTAL.labels(self.settings.service, row.topic).inc()
        metrics.OUTBOX_PARKED.labels(self.settings.service).inc()

    async def refresh_backlog(self) -> int:
        async with self.sessions() as session:
            n = await backlog(session)
            held = await parked_count(session)
        metrics.OUTBOX_BACKLOG.labels(self.settings.service).set(n)
        metrics.OUTBOX_PARKED.labels(self.settings.service).set(held)
        return n
