"""The transactional outbox: events are rows written in the business transaction, and a
relay sends them to Kafka after the commit."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import metrics
from backstop.bus import KafkaProducerHolder
from backstop.db import SessionFactory, raw_connection
from backstop.events import CloudEvent, spec_of
from backstop.settings import Settings
from backstop.tables import outbox

log = logging.getLogger("backstop.outbox")

# One relay at a time per database sends (pg advisory lock), so a household's events keep
# their order even with several replicas; SKIP LOCKED keeps a claimed row from being re-read.
_RELAY_LOCK = 0x6261636B73746F70  # "backstop"

_wakeups: set[asyncio.Event] = set()
COPY_FROM = 50  # events; below this a multi-row INSERT is cheaper than COPY


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
    if not events:
        return
    rows = [outbox_row(e, key) for e in events]
    columns = list(rows[0])
    pick = itemgetter(*columns)
    await _write(session, columns, [pick(r) for r in rows])


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
    shape = template.model_copy(update={"subject": "", "data": {}})
    envelope = shape.model_dump(mode="json", exclude_none=True)
    topic, event_type, correlation = (
        spec_of(template.type).topic,
        template.type,
        template.correlationid,
    )
    rows: list[tuple[object, ...]] = []
    for subject, data in items:
        event_id = str(uuid.uuid4())
        envelope["id"], envelope["subject"], envelope["data"] = event_id, subject, data
        rows.append((event_id, topic, subject, event_type, correlation, orjson.dumps(envelope)))
    if rows:
        await _write(session, _COLUMNS, rows)
    return len(rows)


_COLUMNS = ["event_id", "topic", "key", "event_type", "correlation_id", "value"]


async def _write(session: AsyncSession, columns: list[str], rows: list[tuple[object, ...]]) -> None:
    if len(rows) < COPY_FROM:
        await session.execute(insert(outbox), [dict(zip(columns, r, strict=True)) for r in rows])
    else:
        connection = await raw_connection(session)
        await connection.copy_records_to_table(outbox.name, records=rows, columns=columns)
    wake()


def wake() -> None:
    """Wake the in-process relay (it also polls, so this only saves latency)."""
    for event in _wakeups:
        event.set()


async def backlog(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(outbox)) or 0)


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
                        outbox.c.topic,
                        outbox.c.key,
                        outbox.c.event_type,
                        outbox.c.correlation_id,
                        outbox.c.value,
                    )
                    .order_by(outbox.c.id)
                    .limit(self.settings.outbox_batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                metrics.OUTBOX_BACKLOG.labels(self.settings.service).set(0)
                return 0
            started = time.perf_counter()
            producer = await self.producer.get()
            futures = []
            for row in rows:
                headers = [("ce_type", row.event_type.encode())]
                if row.correlation_id:
                    headers.append(("correlationid", row.correlation_id.encode()))
                futures.append(
                    await producer.send(
                        self.settings.topic(row.topic),
                        value=row.value,
                        key=row.key.encode(),
                        headers=headers,
                    )
                )
            await asyncio.gather(*futures)
            await session.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
            for row in rows:
                metrics.EVENTS_PUBLISHED.labels(row.topic, row.event_type).inc()
            metrics.OUTBOX_SEND_SECONDS.labels(self.settings.service).observe(
                time.perf_counter() - started
            )
        return len(rows)

    async def refresh_backlog(self) -> int:
        async with self.sessions() as session:
            n = await backlog(session)
        metrics.OUTBOX_BACKLOG.labels(self.settings.service).set(n)
        return n
