"""Migration steps every service shares: the kernel's outbox and inbox tables. Each
service's chain calls them in a revision of its own."""

import sqlalchemy as sa
from alembic import op


def create_kernel_tables() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(100)),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column(
            "applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_inbox_applied_at", "inbox", ["applied_at"])


def drop_kernel_tables() -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")


def add_outbox_parking() -> None:
    """Outbox rows Kafka refused for good are parked (parked_at, error), not retried."""
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True)))
    op.add_column("outbox", sa.Column("error", sa.String(500)))


def drop_outbox_parking() -> None:
    op.drop_column("outbox", "error")
    op.drop_column("outbox", "parked_at")
