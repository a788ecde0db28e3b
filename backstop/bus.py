"""Kafka on aiokafka: topics, an idempotent producer, and the consumer loop that commits
offsets only after the handler's transaction committed, retries with backoff, and sends
what still fails to `<topic>.dlq` with the error in headers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition, errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import inbox, metrics, tracing
from backstop.db import SessionFactory, is_transient, unit_of_work
from backstop.events import CloudEvent
from backstop.logs import correlation_id
from backstop.settings import Settings

log = logging.getLogger("backstop.bus")

# Contract topics (DESIGN.md) and their partition counts. Key = household id everywhere.
TOPICS: dict[str, int] = {
    "registry.households": 6,
    "datasync.records": 6,
    "datasync.deliveries": 1,
    "risk.assessments": 6,
    "risk.alerts": 6,
    "assistance.tasks": 6,
    "assistance.decisions": 6,
    "assistance.findings": 6,
    "notify.reminders": 3,
    "quality.findings": 3,
    "kernel.probes": 6,
}

EventHandler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[CloudEvent]], Awaitable[None]]


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


Headers = list[tuple[str, bytes]]


def event_headers(event_type: str, correlation_id: str | None) -> Headers:
    """The Kafka headers every event carries besides its CloudEvent value."""
    headers = [("ce_type", event_type.encode())]
    if correlation_id:
        headers.append(("correlationid", correlation_id.encode()))
    return headers


def message_size(key: bytes, value: bytes, headers: Headers) -> int:
    """The size of a one-record batch as the broker measures it against its
    max.message.bytes (an upper bound; the producer's own check uses the same)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


# Errors about the message itself: sent again, it is refused again. Other non-retriable
# errors (authorization, a fenced producer, a protocol mismatch) are the broker's or the
# configuration's and hit every message alike, so the relay waits for them as for an
# outage instead of parking the whole outbox.
_REFUSED_MESSAGE = (
    errors.MessageSizeTooLargeError,
    errors.RecordTooLargeError,
    errors.RecordListTooLargeError,
    errors.CorruptRecordException,
    errors.InvalidTimestampError,
    errors.UnsupportedForMessageFormatError,
    TypeError,  # key, value or headers of the wrong type: serialization fails
    ValueError,
)


def is_permanent(exc: BaseException) -> bool:
    """Whether Kafka will never accept this message, however often it is sent (too
    large, not serializable). A broker outage and everything else is transient."""
    return isinstance(exc, _REFUSED_MESSAGE)


async def ensure_topics(settings: Settings, topics: dict[str, int] | None = None) -> None:
    """Create every contract topic and its DLQ (idempotent)."""
    wanted = topics or TOPICS
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = []
        for name, partitions in wanted.items():
            for topic, n in (
                (settings.topic(name), partitions),
                (dlq_topic(settings.topic(name)), 1),
            ):
                if topic not in existing:
                    new.append(NewTopic(name=topic, num_partitions=n, replication_factor=1))
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def kafka_ping(settings: Settings, timeout: float = 3.0) -> None:
    """Raise unless the broker answers a metadata request."""
    admin = make_admin(settings, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.list_topics(), timeout)
    finally:
        await admin.close()


def make_admin(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**settings.kafka_client_options(), **options)


def make_consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **settings.kafka_client_options(), **options)


def make_producer(settings: Settings) -> AIOKafkaProducer:
    # Idempotence forces acks=all and keeps per-partition order across retries.
    return AIOKafkaProducer(
        **settings.kafka_client_options(),
        enable_idempotence=True,
        # A record the broker would refuse fails in send(), before it leaves (the relay
        # parks it; see outbox.py). Same measure as message_size().
        max_request_size=settings.kafka_max_message_bytes,
        linger_ms=5,
        max_batch_size=512 * 1024,
        request_timeout_ms=15000,
    )


class KafkaProducerHolder:
    """A producer started on first use and rebuilt after a failure."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()  # concurrent first users share one producer

    async def get(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._starting:
            if self._producer is None:
                producer = make_producer(self.settings)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def reset(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:  # already broken; nothing more to flush
                log.debug("producer stop failed", exc_info=True)


@dataclass
class ConsumerSpec:
    """What a service consumes: a consumer group, its topics and a handler per event type.

    `batch_handler`, when given, applies many events of one partition in one transaction
    (the fast path); a batch that fails is replayed one event at a time to isolate it.

    `partitions_at_once` > 1 applies the batches of that many partitions concurrently,
    each in its own transaction and connection: for handlers that stay correct when two
    partitions (say `registry.households` and `datasync.records`, both keyed by
    household) touch the same entity at once, e.g. by locking it.
    """

    group: str
    topics: list[str]
    handlers: dict[str, EventHandler] = field(default_factory=dict)
    batch_handler: BatchHandler | None = None
    batch_types: frozenset[str] = frozenset()
    partitions_at_once: int = 1


class Consumer:
    def __init__(self, spec: ConsumerSpec, *, sessions: SessionFactory, settings: Settings) -> None:
        self.spec = spec
        self.sessions = sessions
        self.settings = settings
        self.group = settings.topic(spec.group)
        self.dlq = KafkaProducerHolder(settings)
        self._stopping = False
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker down or rebalance storm: start again
                log.warning("consumer %s failed, restarting in %.1fs: %s", self.group, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2
        await self.dlq.stop()

    async def _consume(self) -> None:
        consumer = make_consumer(
            self.settings,
            *[self.settings.topic(t) for t in self.spec.topics],
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.consumer_max_records,
            fetch_max_wait_ms=100,
        )
        self._consumer = consumer
        try:
            await consumer.start()
            if self.spec.partitions_at_once > 1:
                return await self._consume_partitions_at_once(consumer)
            while not self._stopping:
                batches = await consumer.getmany(
                    timeout_ms=300, max_records=self.settings.consumer_max_records
                )
                for tp, records in batches.items():
                    await self._process(tp, records)
                    await self._commit(consumer, {tp: records})
        finally:
            self._consumer = None
            await consumer.stop()

    async def _consume_partitions_at_once(self, consumer: AIOKafkaConsumer) -> None:
        """Batches of `spec.partitions_at_once` partitions in flight, each in its own
        transaction and committed when applied. A partition's next batch is fetched as soon
        as its last one committed, not when the slowest batch of a poll is done, so one
        batch's database round trips keep overlapping another's Python work. Order holds
        within a partition (one batch of it at a time), the only order Kafka gives. A batch
        that fails for good cancels the others and the consumer restarts: what they
        applied is in the inbox and skipped when it comes again."""
        limit = self.spec.partitions_at_once
        # One fetch may bring more partitions than free slots: those wait their turn.
        slots = asyncio.Semaphore(limit)
        running: dict[TopicPartition, asyncio.Task[None]] = {}
        fetch: asyncio.Task[dict[TopicPartition, list[ConsumerRecord]]] | None = None

        async def apply(tp: TopicPartition, records: list[ConsumerRecord]) -> None:
            async with slots:
                await self._process(tp, records)
            await self._commit(consumer, {tp: records})

        try:
            while running or not self._stopping:
                idle = consumer.assignment() - running.keys()
                if fetch is None and not self._stopping and len(running) < limit:
                    if idle or not running:  # neither: not assigned yet, fetch all
                        fetch = asyncio.create_task(
                            consumer.getmany(
                                *idle,
                                timeout_ms=300,
                                max_records=self.settings.consumer_max_records,
                            )
                        )
                await asyncio.wait(
                    [*running.values(), *([fetch] if fetch else [])],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for tp, task in list(running.items()):
                    if task.done():
                        del running[tp]
                        task.result()  # raises a batch's failure
                if fetch is not None and fetch.done():
                    batches, fetch = fetch.result(), None
                    for tp, records in batches.items():
                        if not self._stopping:  # else not committed: they come again
                            running[tp] = asyncio.create_task(apply(tp, records))
        finally:
            for task in running.values():
                task.cancel()
            # A fetch is never cancelled (aiokafka would miscount its polls); its records
            # are not applied nor committed: they come again.
            await asyncio.gather(
                *running.values(), *([fetch] if fetch else []), return_exceptions=True
            )

    async def _commit(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Commit past `batches`: only once the handlers' transactions have committed."""
        positions = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        await consumer.commit(positions)
        for tp, position in positions.items():
            self._record_lag(consumer, tp, position)

    def _record_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition, position: int) -> None:
        high = consumer.highwater(tp)
        if high is not None:
            metrics.CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(
                max(high - position, 0)
            )

    async def _process(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        events: list[tuple[ConsumerRecord, CloudEvent]] = []
        for record in records:
            try:
                events.append((record, CloudEvent.from_bytes(record.value)))
            except Exception as exc:  # not even an envelope: poison, never retried
                await self._dead_letter(record, exc, event_type="unparseable")
        if not events:
            return
        wanted = [(r, e) for r, e in events if self._handles(e.type)]
        for _, e in events:
            if not self._handles(e.type):
                metrics.EVENTS_CONSUMED.labels(tp.topic, e.type, "ignored").inc()
        if not wanted:
            return
        started = time.perf_counter()
        try:
            await self._apply([e for _, e in wanted])
            # One counter update per event type, not per event.
            for event_type, n in Counter(e.type for _, e in wanted).items():
                metrics.EVENTS_CONSUMED.labels(tp.topic, event_type, "ok").inc(n)
        except Exception:
            log.info("batch of %d failed on %s; replaying one by one", len(wanted), tp)
            for record, event in wanted:
                await self._apply_one_with_retries(record, event)
        metrics.HANDLE_SECONDS.labels(self.group).observe(time.perf_counter() - started)

    def _handles(self, event_type: str) -> bool:
        return event_type in self.spec.handlers or event_type in self.spec.batch_types

    async def _apply(self, events: list[CloudEvent]) -> None:
        """Apply events in one transaction, skipping those this consumer already applied."""
        with tracing.consuming(self.group, events):
            await self._apply_in_transaction(events)

    async def _apply_in_transaction(self, events: list[CloudEvent]) -> None:
        async with unit_of_work(self.sessions) as session:
            fresh = await inbox.claim(session, self.group, events)
            batchable = [e for e in fresh if e.type in self.spec.batch_types]
            if batchable and self.spec.batch_handler is not None:
                correlation_id.set(batchable[0].correlationid)
                await self.spec.batch_handler(session, batchable)
            for event in fresh:
                handler = self.spec.handlers.get(event.type)
                if handler is not None and event.type not in self.spec.batch_types:
                    correlation_id.set(event.correlationid)
                    await handler(session, event)
            correlation_id.set(None)

    async def _apply_one_with_retries(self, record: ConsumerRecord, event: CloudEvent) -> None:
        """Apply one event; a poison event goes to the DLQ after the configured retries. While
        the database is unreachable the event is retried for as long as it takes (and the
        partition waits): an outage must never be mistaken for poison."""
        delay = self.settings.consumer_retry_backoff_s
        attempt = 0
        while True:
            try:
                await self._apply([event])
                metrics.EVENTS_CONSUMED.labels(record.topic, event.type, "ok").inc()
                return
            except Exception as exc:
                if is_transient(exc):
                    if self._stopping:
                        raise
                    log.warning("event %s waits for the database: %s", event.id, exc)
                    await asyncio.sleep(min(delay, 5.0))
                    delay *= 2
                    continue
                attempt += 1
                if attempt >= self.settings.consumer_max_retries:
                    log.error("event %s failed %d times, dead-lettered: %s", event.id, attempt, exc)
                    await self._dead_letter(record, exc, event_type=event.type)
                    return
                await asyncio.sleep(delay)
                delay *= 2

    async def _dead_letter(
        self, record: ConsumerRecord, exc: Exception, *, event_type: str
    ) -> None:
        producer = await self.dlq.get()
        headers = [
            ("error", f"{type(exc).__name__}: {exc}"[:2000].encode()),
            ("original_topic", record.topic.encode()),
            ("original_partition", str(record.partition).encode()),
            ("original_offset", str(record.offset).encode()),
            ("consumer_group", self.group.encode()),
        ]
        await producer.send_and_wait(
            dlq_topic(record.topic), value=record.value, key=record.key, headers=headers
        )
        metrics.EVENTS_CONSUMED.labels(record.topic, event_type, "dead_lettered").inc()
