"""Prometheus metrics, one prefix for all services."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text

from backstop.db import SessionFactory

HTTP_SECONDS = Histogram(
    "backstop_http_request_duration_seconds",
    "HTTP request duration by route template and status.",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "backstop_events_published_total",
    "Events sent to Kafka by the outbox relay.",
    ["topic", "type"],
)
EVENTS_CONSUMED = Counter(
    "backstop_events_consumed_total",
    "Events consumed, by outcome (ok, ignored, dead_lettered).",
    ["topic", "type", "outcome"],
)
OUTBOX_BACKLOG = Gauge("backstop_outbox_backlog", "Outbox rows not yet sent.", ["service"])
OUTBOX_FAILURES = Counter(
    "backstop_outbox_failures_total", "Relay attempts that failed (Kafka or DB down).", ["service"]
)
OUTBOX_PARKED = Gauge(
    "backstop_outbox_parked", "Outbox rows Kafka refused for good, waiting for an operator.",
    ["service"],
)  # fmt: skip
OUTBOX_PARKED_TOTAL = Counter(
    "backstop_outbox_parked_rows", "Outbox rows parked (refused for good by Kafka).",
    ["service", "topic"],
)  # fmt: skip
OUTBOX_SEND_SECONDS = Histogram(
    "backstop_outbox_batch_seconds", "Time to send one outbox batch.", ["service"]
)
CONSUMER_LAG = Gauge(
    "backstop_consumer_lag",
    "Messages behind the high watermark.",
    ["group", "topic", "partition"],
)
SERVICE_READY = Gauge(
    "backstop_service_ready", "1 while the database and Kafka answer (as /readyz).", ["service"]
)
HANDLE_SECONDS = Histogram(
    "backstop_consumer_batch_seconds", "Time to apply one consumed batch.", ["group"]
)


async def set_from_query(gauge: Gauge, sessions: SessionFactory, sql: str, **params: Any) -> None:
    """Set a labelled gauge to what `sql` counts: rows of (label values..., value). Label
    sets the query no longer returns drop out."""
    async with sessions() as session:
        rows = (await session.execute(text(sql), params)).all()
    gauge.clear()
    for *labels, value in rows:
        gauge.labels(*labels).set(value)


def install_metrics(app: FastAPI) -> None:
    """`/metrics`; HTTP requests are observed by backstop.asgi.RequestMiddleware."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
