"""Distributed tracing with OpenTelemetry: one trace from a department record to the
webhook it ends in, across HTTP, PostgreSQL, the outbox and Kafka.

- Off unless export is configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT`
  (or `..._TRACES_ENDPOINT`) or `OTEL_TRACES_EXPORTER=otlp|console`; `OTEL_SDK_DISABLED=true`
  wins. `BACKSTOP_TRACES_FILE=<path>` also writes every span as a JSON line (the e2e test
  reads them). Service name: `OTEL_SERVICE_NAME`, else `backstop-<service>`.
- The maintained instrumentations make the spans: FastAPI (server), SQLAlchemy, httpx
  (client, e.g. webhooks) and aiokafka (send/receive, W3C `traceparent` header).
- The context also rides in the event: `make_event` writes the CloudEvents
  distributed-tracing extension `traceparent` into the envelope, so it is stored with the
  outbox row; the relay restores it around the send, a consumer around its handler, and
  whoever sends a stored envelope later (notify's webhooks) around that send.
- Background polling (outbox relay queries, periodic jobs) is not traced, else it would
  bury the traces that matter; what such a loop does for one event is traced in that
  event's trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

    from backstop.events import CloudEvent

TRACEPARENT = "traceparent"
_ENVELOPE_KEY = b'"traceparent":"'
_provider: TracerProvider | None = None
# Within a consumed batch: correlation id -> traceparent of the event that carried it, so an
# event written for one chain continues that chain's trace even when a batch mixes several.
_chains: ContextVar[dict[str, str] | None] = ContextVar("trace_chains", default=None)


class JsonLinesExporter(SpanExporter):
    """Appends each span as one JSON line (for tests and for looking at a run)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # One O_APPEND write per batch: the processes of a system may share the file.
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines)
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS


def enabled() -> bool:
    return _provider is not None


def configure(service: str, exporter: SpanExporter | None = None) -> bool:
    """Set up tracing for this process once, when the environment (or a test's
    `exporter`) asks for it. Returns whether tracing is on."""
    global _provider
    if _provider is not None:
        return True
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    processors: list[Any] = []
    names = {n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()}
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if "otlp" in names or (endpoint and not names & {"none", "console"}):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))  # reads OTEL_EXPORTER_OTLP_*
    if "console" in names:
        processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
    if env.get("BACKSTOP_TRACES_FILE"):
        processors.append(SimpleSpanProcessor(JsonLinesExporter(env["BACKSTOP_TRACES_FILE"])))
    if exporter is not None:
        processors.append(SimpleSpanProcessor(exporter))
    if not processors:
        return False
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, when set, win over this default.
    provider = TracerProvider(resource=Resource.create({"service.name": f"backstop-{service}"}))
    for processor in processors:
        provider.add_span_processor(processor)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)  # once per process (the API allows no other)
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    AIOKafkaInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return True


def instrument_app(app: FastAPI) -> None:
    if _provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=_provider,
            excluded_urls="healthz,readyz,metrics",
            exclude_spans=["receive", "send"],  # the ASGI messages: one span per request
        )


def instrument_engine(engine: AsyncEngine) -> None:
    if _provider is not None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # instrument() applies to one engine per process; a process (or a test) with
        # several runtimes has several engines, so each is hooked directly.
        SQLAlchemyInstrumentor()._instrument(engine=engine.sync_engine, tracer_provider=_provider)


def shutdown() -> None:
    """Export what is pending and turn tracing off again (tests that turned it on)."""
    global _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _provider.force_flush()
    HTTPXClientInstrumentor().uninstrument()
    AIOKafkaInstrumentor().uninstrument()
    _provider = None


def current_traceparent(correlation_id: str | None = None) -> str | None:
    """The W3C traceparent to store in an event written now: the chain's, inside a
    consumed batch, else the current span's. None when tracing is off."""
    if _provider is None:
        return None
    chains = _chains.get()
    if chains and correlation_id and correlation_id in chains:
        return chains[correlation_id]
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def restored(traceparent: str | bytes | None) -> Iterator[None]:
    """Make the stored context current: a traceparent, or an envelope's bytes carrying one.
    Starts from a fresh context, so it also lifts `quiet()`."""
    if _provider is None:
        yield
        return
    if isinstance(traceparent, bytes):
        traceparent = _from_envelope(traceparent)
    token = context.attach(propagate.extract({TRACEPARENT: traceparent} if traceparent else {},
                                             context=context.Context()))  # fmt: skip
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def consuming(group: str, events: Sequence[CloudEvent]) -> Iterator[None]:
    """A span around a consumer's transaction, child of the first event's stored context
    and linked to the others'; events written inside continue each one's own chain."""
    if _provider is None:
        yield
        return
    parents = [e.traceparent for e in events if e.traceparent]
    contexts = [
        trace.get_current_span(propagate.extract({TRACEPARENT: p})).get_span_context()
        for p in parents
    ]
    chains = {e.correlationid: e.traceparent for e in events if e.correlationid and e.traceparent}
    name = f"{group} apply " + (events[0].type if len(events) == 1 else f"{len(events)} events")
    with restored(parents[0] if parents else None):
        token = _chains.set(chains)
        try:
            with _provider.get_tracer("backstop").start_as_current_span(
                name,
                kind=trace.SpanKind.CONSUMER,
                links=[trace.Link(c) for c in contexts[1:]],
                attributes={"messaging.consumer.group.name": group,
                            "messaging.batch.message_count": len(events)},
            ):  # fmt: skip
                yield
        finally:
            _chains.reset(token)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No spans for background polling (see the module's docstring)."""
    if _provider is None:
        yield
        return
    with suppress_instrumentation():
        yield


def _from_envelope(value: bytes) -> str | None:
    """The envelope's traceparent without parsing the whole JSON (the relay sends
    thousands of rows a second)."""
    at = value.find(_ENVELOPE_KEY)
    if at < 0:
        return None
    start = at + len(_ENVELOPE_KEY)
    end = value.find(b'"', start)
    return value[start:end].decode("ascii", "replace") if end > 0 else None
