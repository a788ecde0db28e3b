"""Notify tables: recipients, household read model, reminders and their delivery log,
schedules (seeded with the seed's deadlines), webhook subscriptions and deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "households",
        sa.Column("household_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("town_code", sa.String(length=9), nullable=False),
        sa.Column("household_number", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("monitoring_status", sa.String(length=20), nullable=False),
        sa.Column(
            "contacts", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("household_id"),
    )
    op.create_index(op.f("ix_households_region_code"), "households", ["region_code"], unique=False)
    op.create_table(
        "recipients",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("kind", "code"),
    )
    op.create_index(op.f("ix_recipients_region_code"), "recipients", ["region_code"], unique=False)
    op.create_table(
        "reminders",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("recipient", sa.String(length=100), nullable=False),
        sa.Column("recipient_name", sa.String(length=200), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.String(length=40), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("correlation_id", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
        sa.UniqueConstraint("seq"),
    )
    op.create_index("ix_reminders_due", "reminders", ["status", "next_attempt_at"], unique=False)
    op.create_index("ix_reminders_recipient_seq", "reminders", ["recipient", "seq"], unique=False)
    op.create_index("ix_reminders_ref", "reminders", ["ref"], unique=False)
    op.create_index(op.f("ix_reminders_region_code"), "reminders", ["region_code"], unique=False)
    op.create_table(
        "schedule_occurrences",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("schedule", sa.String(length=64), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=False),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("months", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("due_day", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lead_days", sa.Integer(), server_default="0", nullable=False),
        sa.Column("send_hour", sa.Integer(), server_default="8", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("last_occurrence", sa.String(length=100), nullable=True),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("callback_url", sa.String(length=2000), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.String(length=200)), nullable=False),
        sa.Column("region_prefix", sa.String(length=12), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reminder_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("reminder_id", sa.UUID(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["reminder_id"],
            ["reminders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_reminder_attempts_reminder_id"), "reminder_attempts", ["reminder_id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("subscription_id", sa.UUID(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("region_code", sa.String(length=12), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_delivery_event"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        "ix_webhook_deliveries_sub_seq",
        "webhook_deliveries",
        ["subscription_id", "seq"],
        unique=False,
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_webhook_attempts_delivery_id"), "webhook_attempts", ["delivery_id"], unique=False
    )
    # The seed's calendar (Asia/Shanghai): contact lists on the 1st; medical,
    # emergency-management and civil-affairs feeds due by the 5th of each month (reminded
    # 3 days before); education by the end of March and of October (reminded 7 days before).
    schedules = sa.table(
        "schedules",
        sa.column("name", sa.String),
        sa.column("kind", sa.String),
        sa.column("source", sa.String),
        sa.column("months", postgresql.ARRAY(sa.Integer())),
        sa.column("due_day", sa.Integer),
        sa.column("lead_days", sa.Integer),
        sa.column("send_hour", sa.Integer),
    )
    every_month = list(range(1, 13))
    op.bulk_insert(
        schedules,
        [
            {
                "name": "monthly_contacts",
                "kind": "monthly_contacts",
                "source": None,
                "months": every_month,
                "due_day": 0,
                "lead_days": 0,
                "send_hour": 8,
            },
            *[
                {
                    "name": f"feed_due:{source}",
                    "kind": "feed_due",
                    "source": source,
                    "months": every_month,
                    "due_day": 5,
                    "lead_days": 3,
                    "send_hour": 9,
                }
                for source in ("medical", "disaster", "civil_affairs")
            ],
            {
                "name": "feed_due:education",
                "kind": "feed_due",
                "source": "education",
                "months": [3, 10],
                "due_day": 0,
                "lead_days": 7,
                "send_hour": 9,
            },
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_attempts_delivery_id"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_sub_seq", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_reminder_attempts_reminder_id"), table_name="reminder_attempts")
    op.drop_table("reminder_attempts")
    op.drop_table("subscriptions")
    op.drop_table("schedules")
    op.drop_table("schedule_occurrences")
    op.drop_index(op.f("ix_reminders_region_code"), table_name="reminders")
    op.drop_index("ix_reminders_ref", table_name="reminders")
    op.drop_index("ix_reminders_recipient_seq", table_name="reminders")
    op.drop_index("ix_reminders_due", table_name="reminders")
    op.drop_table("reminders")
    op.drop_index(op.f("ix_recipients_region_code"), table_name="recipients")
    op.drop_table("recipients")
    op.drop_index(op.f("ix_households_region_code"), table_name="households")
    op.drop_table("households")
