"""Kernel tables every service owns in its own database: the outbox and the inbox.

They live on `kernel_metadata`; each service's Alembic env targets
`[<service metadata>, kernel_metadata]`, so each service's migrations create them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    func,
)

kernel_metadata = MetaData()

outbox = Table(
    "outbox",
    kernel_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("correlation_id", String(100)),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Parked: Kafka refused the row for good (too large, not serializable). The relay
    # skips it until an operator re-sends or drops it (backstop.admin, backstop.cli).
    Column("parked_at", DateTime(timezone=True)),
    Column("error", String(500)),
)

inbox = Table(
    "inbox",
    kernel_metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("event_type", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_inbox_applied_at", "applied_at"),
)
