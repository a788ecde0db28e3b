"""One trace across the outbox and Kafka, in-process with the in-memory exporter: the
context of the span that wrote an event is stored in its envelope (CloudEvents
`traceparent`), restored by the relay around the send (aiokafka span, `traceparent`
header) and by the consumer around its handler, whose database work and log lines carry
the same trace id."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncSession

from backstop import outbox, tracing
from backstop.app import ServiceSpec
from backstop.bus import ConsumerSpec, ensure_topics
from backstop.contracts.kernel import PROBE_TOPIC, ProbeEmitted
from backstop.db import unit_of_work
from backstop.events import CloudEvent, make_event
from backstop.logs import JsonFormatter
from backstop.settings import Settings
from tests.support import start_runtime, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("kernel", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


async def test_one_trace_from_the_writer_through_the_outbox_to_the_consumer(
    kernel_settings: Settings, spans: InMemorySpanExporter
) -> None:
    # A topic of its own: other tests' probes and poison on the run's topic would bring
    # spans of their own traces.
    own = f"{kernel_settings.topic_prefix}trace{uuid.uuid4().hex[:6]}."
    kernel_settings = kernel_settings.model_copy(update={"topic_prefix": own})
    await ensure_topics(kernel_settings, {PROBE_TOPIC: 1})
    group = f"trace-{uuid.uuid4().hex[:6]}"
    seen: list[tuple[int, str]] = []
    formatter = JsonFormatter("kernel")

    household = str(uuid.uuid4())

    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        if event.subject != household:
            return  # other tests' probes share the topic
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "applied", None, None)
        seen.append(
            (trace.get_current_span().get_span_context().trace_id, formatter.format(record))
        )

    spec = ServiceSpec(name="kernel", title="t", description="t", routers=[], consumers=[
        ConsumerSpec(group=group, topics=[PROBE_TOPIC],
                     handlers={"backstop.kernel.probe.emitted.v1": handle})])  # fmt: skip
    runtime = await start_runtime(spec, kernel_settings)
    try:
        with trace.get_tracer("test").start_as_current_span("write probe") as root:
            event = make_event(
                "kernel", ProbeEmitted(household_id=household, seq=1), subject=household
            )
            async with unit_of_work(runtime.sessions) as session:
                await outbox.publish(session, event)
        trace_id = root.get_span_context().trace_id
        assert event.traceparent and f"{trace_id:032x}" in event.traceparent

        await wait_for(lambda: seen, timeout=60)
        assert seen[0][0] == trace_id
        assert f'"trace_id":"{trace_id:032x}"' in seen[0][1]  # log lines carry it

        # The message on the broker carries the W3C header of the same trace.
        consumer = AIOKafkaConsumer(kernel_settings.topic(PROBE_TOPIC),
            bootstrap_servers=kernel_settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest")  # fmt: skip
        await consumer.start()
        try:
            headers: dict[str, bytes] = {}
            while not headers:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        if event.id.encode() in r.value:  # others' poison shares the topic
                            headers = dict(r.headers)
        finally:
            await consumer.stop()
        assert f"{trace_id:032x}" in headers["traceparent"].decode()
    finally:
        await runtime.stop()

    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    names = {s.name for s in mine}
    assert f"{kernel_settings.topic(PROBE_TOPIC)} send" in names  # aiokafka, by the relay
    assert f"{kernel_settings.topic(PROBE_TOPIC)} receive" in names  # aiokafka, consumer
    assert f"{kernel_settings.topic(group)} apply backstop.kernel.probe.emitted.v1" in names
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in mine
               if s.name not in ("write probe",))  # fmt: skip
    # The relay's polling is not traced: no span outside the event's trace but the
    # consumer's receive spans.
    others = {s.name for s in spans.get_finished_spans() if s.context.trace_id != trace_id}
    assert all(n.endswith(" receive") for n in others), others
